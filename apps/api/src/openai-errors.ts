/**
 * OpenAI's error envelope on problem documents of the OpenAI-compatible routes: the problem keeps its RFC 9457
 * members and gains `error: {message, type, param, code}`, which OpenAI's clients read (`APIError.code`).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

/** The `error` member OpenAI's API sends: `type` is `invalid_request_error` for 4xx, `server_error` for 5xx. */
export function openAiError(status: number, code: string, message: string, param: string | null) {
  return { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param, code };
}

/** preSerialization hook: adds {@link openAiError} to a problem+json payload. */
export async function addOpenAiError(_req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  const type = String(reply.getHeader('content-type') ?? '');
  if (!type.startsWith('application/problem+json') || !payload || typeof payload !== 'object') return payload;
  const p = payload as { status: number; code: string; detail: string; param: string | null };
  return { ...p, error: openAiError(p.status, p.code, p.detail, p.param ?? null) };
}
