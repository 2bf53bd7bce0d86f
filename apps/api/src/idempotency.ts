/**
 * `Idempotency-Key` on POSTs: the first request with a key runs and its response is stored; a replay
 * with the same request gets the stored response (header `Idempotent-Replayed: true`); the same key
 * with a different request, or while the first is still running, answers 409.
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { PrismaClient } from './shared/db.js';
import { ApiError } from './errors.js';
import { authOf } from './auth.js';

/** A handler's answer. */
export interface Stored {
  status: number;
  body: unknown;
}

/** sha256 of a canonical JSON rendering (sorted keys). */
export function requestHash(value: unknown): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]));
    return v;
  };
  return createHash('sha256').update(JSON.stringify(canon(value)) ?? 'null').digest('hex');
}

/** The request's Idempotency-Key header, checked (1..255 printable ASCII). */
export function idempotencyKeyOf(req: FastifyRequest): string | null {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return null;
  const key = Array.isArray(raw) ? raw[0] : raw;
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) throw new ApiError(400, 'invalid_idempotency_key', 'Idempotency-Key must be 1 to 255 printable ASCII characters', { param: 'Idempotency-Key' });
  return key;
}

/**
 * Runs `handler` once per (project, Idempotency-Key) and sends its answer; replays it on repeats.
 * Without the header it just runs the handler. A handler error releases the key.
 */
export async function idempotent(db: PrismaClient, req: FastifyRequest, reply: FastifyReply, hash: string, handler: () => Promise<Stored>): Promise<FastifyReply> {
  const key = idempotencyKeyOf(req);
  if (!key) {
    const r = await handler();
    return reply.code(r.status).send(r.body);
  }
  const { projectId } = authOf(req);
  const path = req.routeOptions.url ?? req.url;
  try {
    await db.idempotencyKey.create({ data: { projectId, key, method: req.method, path, requestHash: hash } });
  } catch (e) {
    if ((e as { code?: string }).code !== 'P2002') throw e;
    const prior = await db.idempotencyKey.findUnique({ where: { projectId_key: { projectId, key } } });
    if (!prior) throw new ApiError(409, 'idempotency_key_in_use', 'A request with this Idempotency-Key is in progress; retry later', { param: 'Idempotency-Key' });
    if (prior.requestHash !== hash || prior.method !== req.method || prior.path !== path) {
      throw new ApiError(409, 'idempotency_key_reused', 'This Idempotency-Key was used with a different request', { param: 'Idempotency-Key' });
    }
    if (prior.status === null) throw new ApiError(409, 'idempotency_key_in_use', 'A request with this Idempotency-Key is in progress; retry later', { param: 'Idempotency-Key' });
    return reply.code(prior.status).header('idempotent-replayed', 'true').send(prior.body);
  }
  let r: Stored;
  try {
    r = await handler();
  } catch (e) {
    await db.idempotencyKey.delete({ where: { projectId_key: { projectId, key } } }).catch(() => {});
    throw e;
  }
  await db.idempotencyKey.update({ where: { projectId_key: { projectId, key } }, data: { status: r.status, body: r.body as object } });
  return reply.code(r.status).send(r.body);
}
