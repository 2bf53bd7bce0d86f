/**
 * Error handling: every error a route throws (an {@link ApiError}, a validation failure, a Fastify or plugin
 * error) and every unknown route is answered as problem+json; 5xx are logged.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isDatabaseUnavailable, isRedisUnavailable } from '@edgetune/store';
import { ApiError, PROBLEM_TYPE_BASE, sendProblem, type ProblemItem } from '../errors.js';

/** `/a/b/0` + `missingProperty` -> `a.b[0].c` */
function paramOf(context: string | undefined, path: string, extra?: string): string {
  const parts = path
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || (context === 'body' ? 'body' : (context ?? ''));
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Bad fields listed in one problem at most. */
const MAX_ITEMS = 50;

/** AJV errors -> one item per bad field (anyOf branches folded into one message), the first {@link MAX_ITEMS}. */
export function validationItems(errs: AjvError[], context: string | undefined): ProblemItem[] {
  const byParam = new Map<string, string[]>();
  for (const e of errs) {
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    const extra =
      e.keyword === 'required'
        ? String(e.params.missingProperty)
        : e.keyword === 'additionalProperties'
          ? String(e.params.additionalProperty)
          : undefined;
    const param = paramOf(context, e.instancePath, extra);
    let msg = e.message ?? 'is invalid';
    if (e.keyword === 'required') msg = 'is required';
    else if (e.keyword === 'additionalProperties') msg = 'is not a known field';
    else if (e.keyword === 'const' || e.keyword === 'enum')
      msg = `must be one of ${JSON.stringify(e.params.allowedValues ?? [e.params.allowedValue])}`;
    const list = byParam.get(param) ?? [];
    if (!list.includes(msg)) list.push(msg);
    byParam.set(param, list);
  }
  // a failed anyOf branch also reports the parent (e.g. "must be null" for a nullable object): keep the deepest
  // (the ancestors of every param in one set: a body of 10,000 bad items stays linear)
  const ancestors = new Set<string>();
  for (const p of byParam.keys()) for (const m of p.matchAll(/[.[]/g)) if (m.index) ancestors.add(p.slice(0, m.index));
  return [...byParam]
    .filter(([param]) => !ancestors.has(param))
    .slice(0, MAX_ITEMS)
    .map(([param, msgs]) => ({ param, message: `${param} ${msgs.join(', or ')}` }));
}

/** Seconds a client is told to wait (Retry-After) when a store is unavailable. */
export const STORE_RETRY_AFTER_S = 5;

/** Codes of a store outage: expected while it lasts, so not logged per request (the store watch logs it once). */
const OUTAGE_CODES = new Set(['database_unavailable', 'queue_unavailable']);

/**
 * Infrastructure errors: PostgreSQL or Redis unreachable -> 503 `database_unavailable` / `queue_unavailable`
 * with Retry-After; null for anything else.
 */
export function storeOutageError(err: unknown): ApiError | null {
  const headers = { 'retry-after': String(STORE_RETRY_AFTER_S) };
  if (isDatabaseUnavailable(err))
    return new ApiError(503, 'database_unavailable', 'The database (PostgreSQL) is unavailable; retry later', { headers });
  if (isRedisUnavailable(err))
    return new ApiError(503, 'queue_unavailable', 'The job queue (Redis) is unavailable; retry later', { headers });
  return null;
}

/** Maps Fastify/plugin errors to ApiError. */
export function toApiError(err: FastifyError & { validation?: AjvError[]; validationContext?: string }): ApiError {
  if (err instanceof ApiError) return err;
  const outage = storeOutageError(err);
  if (outage) return outage;
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
    case 'FST_ERR_BAD_URL':
      return new ApiError(400, 'invalid_url', 'The URL is not valid (a malformed percent-encoding or invalid UTF-8)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new ApiError(414, 'uri_too_long', 'A path parameter is longer than the router accepts (100 characters)');
  }
  if (err instanceof SyntaxError || err.statusCode === 400) return new ApiError(400, 'bad_request', err.message);
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status >= 500) return new ApiError(status, 'internal_error', 'Internal server error');
  return new ApiError(status, CODE_OF_STATUS[status] ?? 'bad_request', err.message);
}

/**
 * An error met while reading a multipart/form-data body: the parser's own (no boundary, a truncated or
 * malformed part) becomes 400 `invalid_multipart`; API errors, limits (`FST_*`) and file-system errors
 * (writing the upload) are returned as they are.
 */
export function multipartError(err: unknown): unknown {
  if (err instanceof ApiError || !(err instanceof Error)) return err;
  const e = err as Error & { code?: unknown; syscall?: unknown };
  if (e.syscall || (typeof e.code === 'string' && e.code.startsWith('FST_'))) return err;
  return new ApiError(400, 'invalid_multipart', `The multipart/form-data body is malformed: ${e.message}`);
}

/** Codes of the HTTP-level errors Fastify and Node answer by status alone. */
const CODE_OF_STATUS: Record<number, string> = {
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'body_too_large',
  414: 'uri_too_long',
  431: 'headers_too_large',
};

/**
 * Fastify's `frameworkErrors`: errors of the router before a route runs (a malformed URL, an overlong path
 * parameter), answered as problem+json like every other error.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const e = toApiError(err);
  if (e.status >= 500) req.log.error({ err }, 'request failed');
  sendProblem(req, reply, e);
}

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refused (a bad Content-Length, a control
 * character in a header, an overlong header block, a timeout) never reaches a route, so the answer is
 * written on the socket here, as problem+json, and the connection closed.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'The request line and headers exceed the size limit']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'The request was not received in time']
        : [400, 'bad_request', `Malformed HTTP request${err.code ? ` (${err.code})` : ''}`];
  const title = STATUS_CODES[status] ?? 'Error';
  const body = JSON.stringify({ type: PROBLEM_TYPE_BASE + code, title, status, detail, code, param: null });
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}

/** Installs the error and not-found handlers on the root instance. */
const errorHandling = fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const e = toApiError(err);
      if (e.status >= 500 && !OUTAGE_CODES.has(e.code)) req.log.error({ err }, 'request failed');
      return sendProblem(req, reply, e);
    });
    app.setNotFoundHandler((req, reply) =>
      sendProblem(req, reply, new ApiError(404, 'route_not_found', `No route ${req.method} ${req.url.split('?')[0]}`)),
    );
  },
  { name: 'errors' },
);

export default errorHandling;
