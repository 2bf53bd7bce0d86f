/**
 * Errors as RFC 9457 `application/problem+json`, with OpenAI-style `code` and `param` extension members.
 * Every 4xx/5xx the API sends goes through here; `code` values are stable (clients switch on them).
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

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
  constructor(status: number, code: string, detail: string, opts: { param?: string | null; errors?: ProblemItem[]; headers?: Record<string, string>; extra?: Record<string, unknown> } = {}) {
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
export function notFound(kind: 'job' | 'file' | 'model' | 'project' | 'api_key' | 'checkpoint' | 'policy', id: string): ApiError {
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

/** `/a/b/0` + `missingProperty` -> `a.b[0].c` */
function paramOf(context: string | undefined, path: string, extra?: string): string {
  const parts = path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || (context === 'body' ? 'body' : context ?? '');
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** AJV errors -> one item per bad field (anyOf branches folded into one message). */
export function validationItems(errs: AjvError[], context: string | undefined): ProblemItem[] {
  const byParam = new Map<string, string[]>();
  for (const e of errs) {
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    const extra = e.keyword === 'required' ? String(e.params.missingProperty) : e.keyword === 'additionalProperties' ? String(e.params.additionalProperty) : undefined;
    const param = paramOf(context, e.instancePath, extra);
    let msg = e.message ?? 'is invalid';
    if (e.keyword === 'required') msg = 'is required';
    else if (e.keyword === 'additionalProperties') msg = 'is not a known field';
    else if (e.keyword === 'const' || e.keyword === 'enum') msg = `must be one of ${JSON.stringify(e.params.allowedValues ?? [e.params.allowedValue])}`;
    const list = byParam.get(param) ?? [];
    if (!list.includes(msg)) list.push(msg);
    byParam.set(param, list);
  }
  // a failed anyOf branch also reports the parent (e.g. "must be null" for a nullable object): keep the deepest
  const params = [...byParam.keys()];
  const deeper = (p: string) => params.some((q) => q !== p && (q.startsWith(`${p}.`) || q.startsWith(`${p}[`)));
  return [...byParam].filter(([param]) => !deeper(param)).map(([param, msgs]) => ({ param, message: `${param} ${msgs.join(', or ')}` }));
}

/** Maps Fastify/plugin errors to ApiError. */
export function toApiError(err: FastifyError & { validation?: AjvError[]; validationContext?: string }): ApiError {
  if (err instanceof ApiError) return err;
  if (err.validation) {
    const errors = validationItems(err.validation, err.validationContext);
    const detail = errors.length ? `Invalid request: ${errors.map((e) => e.message).join('; ')}` : err.message;
    return new ApiError(400, 'invalid_request', detail, { param: errors[0]?.param ?? null, errors });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ApiError(415, 'unsupported_media_type', err.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError(400, 'invalid_json', err.message);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'body_too_large', err.message);
    case 'FST_REQ_FILE_TOO_LARGE':
      return new ApiError(413, 'file_too_large', 'The file exceeds the upload size limit', { param: 'file' });
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new ApiError(413, 'too_many_parts', err.message);
  }
  if (err instanceof SyntaxError || err.statusCode === 400) return new ApiError(400, 'bad_request', err.message);
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status >= 500) return new ApiError(status, 'internal_error', 'Internal server error');
  return new ApiError(status, 'bad_request', err.message);
}

/** Installs the error and not-found handlers. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toApiError(err);
    if (e.status >= 500) req.log.error({ err }, 'request failed');
    return sendProblem(req, reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendProblem(req, reply, new ApiError(404, 'route_not_found', `No route ${req.method} ${req.url.split('?')[0]}`)));
}
