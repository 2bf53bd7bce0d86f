/**
 * Errors as RFC 9457 `application/problem+json`, with OpenAI-style `code` and `param` extension members.
 * Every 4xx/5xx the API sends goes through here; `code` values are stable (clients switch on them).
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Base of problem `type` URIs: `<base><code>`. */
export const PROBLEM_TYPE_BASE = 'https://edgetune.local/problems/';

/** One item of a problem's `errors` list: a bad field (`param`) or a bad dataset line (`line`). */
export interface ProblemItem {
  param?: string | null;
  line?: number;
  code?: string;
  message: string;
}

/** The problem document. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  code: string;
  param: string | null;
  errors?: ProblemItem[];
  request_id?: string;
}

/** An error the API answers with as problem+json. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | null;
  readonly errors?: ProblemItem[];
  readonly headers?: Record<string, string>;
  /** extension members of the problem document (e.g. the plan of a job that does not fit) */
  readonly extra?: Record<string, unknown>;
  constructor(
    status: number,
    code: string,
    detail: string,
    opts: { param?: string | null; errors?: ProblemItem[]; headers?: Record<string, string>; extra?: Record<string, unknown> } = {},
  ) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.param = opts.param ?? null;
    this.errors = opts.errors;
    this.headers = opts.headers;
    this.extra = opts.extra;
  }
}

/** 404 for a resource that does not exist or belongs to another project (same answer for both). */
export function notFound(
  kind: 'job' | 'file' | 'model' | 'project' | 'api_key' | 'checkpoint' | 'policy' | 'recommendation' | 'webhook',
  id: string,
): ApiError {
  return new ApiError(404, `${kind}_not_found`, `No ${kind.replace('_', ' ')} with id ${JSON.stringify(id)}`, { param: 'id' });
}

/** Sends a problem document. */
export function sendProblem(req: FastifyRequest, reply: FastifyReply, e: ApiError): FastifyReply {
  const body: Problem = {
    type: PROBLEM_TYPE_BASE + e.code,
    title: STATUS_CODES[e.status] ?? 'Error',
    status: e.status,
    detail: e.message,
    instance: req.url.split('?')[0],
    code: e.code,
    param: e.param,
    ...(e.errors ? { errors: e.errors } : {}),
    ...e.extra,
    request_id: String(req.id),
  };
  if (e.headers) reply.headers(e.headers);
  return reply.code(e.status).type('application/problem+json').send(body);
}
