/**
 * Error handling: every error a route throws (an {@link ApiError}, a validation failure, a Fastify or plugin
 * error) and every unknown route is answered as problem+json; 5xx are logged.
 */
import type { FastifyError } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError, sendProblem, type ProblemItem } from '../errors.js';

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

/** AJV errors -> one item per bad field (anyOf branches folded into one message). */
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

/** Installs the error and not-found handlers on the root instance. */
const errorHandling = fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const e = toApiError(err);
      if (e.status >= 500) req.log.error({ err }, 'request failed');
      return sendProblem(req, reply, e);
    });
    app.setNotFoundHandler((req, reply) =>
      sendProblem(req, reply, new ApiError(404, 'route_not_found', `No route ${req.method} ${req.url.split('?')[0]}`)),
    );
  },
  { name: 'errors' },
);

export default errorHandling;
