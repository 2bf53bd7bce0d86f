/**
 * `Idempotency-Key` on POSTs: the first request with a key runs and its response is stored; a replay
 * with the same request gets the stored response (header `Idempotent-Replayed: true`); the same key
 * with a different request, or while the first is still running, answers 409.
 *
 * A key whose request is running is a row with `status` null, claimed at `created_at`. The request
 * renews that claim every third of the timeout (EDGETUNE_IDEMPOTENCY_TIMEOUT_MS) while its handler runs,
 * so a claim older than the timeout belongs to a request whose API process died: the next request with
 * the same key and request takes it over (a compare-and-set on the claim time, so one retry wins) and
 * runs the handler again. A request that lost its claim (its renewals stalled past the timeout) still
 * answers its own client but neither stores its answer nor releases the key.
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

/** How long an in-progress key may go without its claim being renewed before a retry takes it over (EDGETUNE_IDEMPOTENCY_TIMEOUT_MS default). */
export const IDEMPOTENCY_TIMEOUT_MS = 60_000;

/** Options of {@link idempotent}. */
export interface IdempotencyOptions {
  /** takeover timeout of an in-progress key, ms (default {@link IDEMPOTENCY_TIMEOUT_MS}); its claim is renewed every third of it */
  timeoutMs?: number;
}

const inUse = (retryAfterMs: number) => new ApiError(409, 'idempotency_key_in_use', 'A request with this Idempotency-Key is in progress; retry later', {
  param: 'Idempotency-Key', headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
});

/**
 * Runs `handler` once per (project, Idempotency-Key) and sends its answer; replays it on repeats.
 * Without the header it just runs the handler. A handler error releases the key. A key left in progress
 * by a request that stopped renewing it for `opts.timeoutMs` (its API process died) is taken over.
 */
export async function idempotent(db: PrismaClient, req: FastifyRequest, reply: FastifyReply, hash: string, handler: () => Promise<Stored>, opts: IdempotencyOptions = {}): Promise<FastifyReply> {
  const key = idempotencyKeyOf(req);
  if (!key) {
    const r = await handler();
    return reply.code(r.status).send(r.body);
  }
  const timeoutMs = opts.timeoutMs ?? IDEMPOTENCY_TIMEOUT_MS;
  const { projectId } = authOf(req);
  const path = req.routeOptions.url ?? req.url;
  const id = { projectId, key };
  // the claim: the key row's created_at while its status is null (renewed below; every write compares it)
  let claim = new Date();
  try {
    await db.idempotencyKey.create({ data: { projectId, key, method: req.method, path, requestHash: hash, createdAt: claim } });
  } catch (e) {
    if ((e as { code?: string }).code !== 'P2002') throw e;
    const prior = await db.idempotencyKey.findUnique({ where: { projectId_key: id } });
    if (!prior) throw inUse(1000); // released just now
    if (prior.requestHash !== hash || prior.method !== req.method || prior.path !== path) {
      throw new ApiError(409, 'idempotency_key_reused', 'This Idempotency-Key was used with a different request', { param: 'Idempotency-Key' });
    }
    if (prior.status !== null) return reply.code(prior.status).header('idempotent-replayed', 'true').send(prior.body);
    const age = Date.now() - prior.createdAt.getTime();
    if (age < timeoutMs) throw inUse(timeoutMs - age);
    // abandoned (its request's process died): take it over, once however many retries race
    claim = new Date();
    const took = await db.idempotencyKey.updateMany({ where: { ...id, status: null, createdAt: prior.createdAt }, data: { createdAt: claim } });
    if (!took.count) throw inUse(1000);
    req.log.warn({ idempotencyKey: key, claimedAt: prior.createdAt }, 'Idempotency-Key taken over from a request that stopped');
  }
  // renew the claim while the handler runs, so that only a dead request's key can be taken over
  let renewing: Promise<unknown> = Promise.resolve();
  let lost = false;
  const renew = () => {
    renewing = renewing.then(async () => {
      if (lost) return;
      const next = new Date();
      const r = await db.idempotencyKey.updateMany({ where: { ...id, status: null, createdAt: claim }, data: { createdAt: next } });
      if (r.count) claim = next;
      else lost = true;
    }).catch(() => {}); // a failed renewal is retried at the next tick
  };
  const timer = setInterval(renew, Math.max(1, Math.floor(timeoutMs / 3)));
  const settled = async () => {
    clearInterval(timer);
    await renewing;
  };
  let r: Stored;
  try {
    r = await handler();
  } catch (e) {
    await settled();
    await db.idempotencyKey.deleteMany({ where: { ...id, status: null, createdAt: claim } }).catch(() => {});
    throw e;
  }
  await settled();
  const stored = await db.idempotencyKey.updateMany({ where: { ...id, status: null, createdAt: claim }, data: { status: r.status, body: r.body as object } });
  if (!stored.count) req.log.warn({ idempotencyKey: key }, 'Idempotency-Key was taken over while this request ran; its answer is not stored');
  return reply.code(r.status).send(r.body);
}
