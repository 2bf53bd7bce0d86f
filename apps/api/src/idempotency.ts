/**
 * `Idempotency-Key` on POSTs: the first request with a key runs and its response is stored; a replay
 * with the same request gets the stored response (header `Idempotent-Replayed: true`); the same key
 * with a different request, or while the first is still running, answers 409.
 *
 * A key whose request is running is a row with `status` null, claimed at `created_at`. The request
 * renews that claim every third of the timeout (EDGETUNE_IDEMPOTENCY_TIMEOUT_MS) while its handler runs,
 * so a claim older than the timeout belongs to a request whose API process died: the next request with
 * the same key and request takes it over (a compare-and-set on the claim time, so one retry wins) and
 * runs the handler again. A request that lost its claim (its renewals stalled past the timeout) neither
 * stores its answer nor releases the key.
 *
 * Two modes. {@link idempotent} stores the answer in a statement of its own after the handler: a request that
 * dies or loses its claim in between keeps its side effects (and the loser still answers its own client), so
 * a retry must find them again (jobs and files look theirs up by key; a queue entry or a blob cannot join a
 * transaction). {@link idempotentTx}, for handlers whose only side effects are database writes, makes them in
 * the transaction that stores the answer (compared on the claim): they commit together or not at all, and a
 * request that lost its claim rolls back and answers 409 `idempotency_key_in_use` (projects, API keys: no
 * second project, no live key whose secret nobody got).
 *
 * Answers are kept for the retention (EDGETUNE_IDEMPOTENCY_RETENTION_MS, 24 h as at Stripe), counted from the
 * request's last claim (≈ when its answer was stored): the table would otherwise grow forever, and the answer of
 * `POST /v1/projects/:id/keys` holds a live key's plaintext secret. After it the key is new: a claim deletes an
 * expired answer in its way, and {@link sweepIdempotencyKeys} deletes the rest (at API startup and periodically).
 * Either also clears the key from the job or file created under it, in the same statement, so that a request
 * reusing the key creates its own instead of finding that one. In-progress keys never expire here (takeover).
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Prisma, type PrismaClient } from '@edgetune/store';
import type { Config } from '@edgetune/core';
import { ApiError } from './errors.js';
import { authOf } from './plugins/auth.js';

/** A handler's answer. */
export interface Stored {
  status: number;
  body: unknown;
}

/** sha256 of a canonical JSON rendering (sorted keys). */
export function requestHash(value: unknown): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v as object)
          .sort()
          .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return createHash('sha256')
    .update(JSON.stringify(canon(value)) ?? 'null')
    .digest('hex');
}

/** The request's Idempotency-Key header, checked (1..255 printable ASCII). */
export function idempotencyKeyOf(req: FastifyRequest): string | null {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return null;
  const key = Array.isArray(raw) ? raw[0] : raw;
  if (!/^[\x21-\x7e]{1,255}$/.test(key))
    throw new ApiError(400, 'invalid_idempotency_key', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
      param: 'Idempotency-Key',
    });
  return key;
}

/** How long an in-progress key may go without its claim being renewed before a retry takes it over (EDGETUNE_IDEMPOTENCY_TIMEOUT_MS default). */
export const IDEMPOTENCY_TIMEOUT_MS = 60_000;

/** How long a key's stored answer is replayed, ms, counted from its request's last claim (EDGETUNE_IDEMPOTENCY_RETENTION_MS default: 24 h). */
export const IDEMPOTENCY_RETENTION_MS = 24 * 3_600_000;

/** Options of {@link idempotent}. */
export interface IdempotencyOptions {
  /** takeover timeout of an in-progress key, ms (default {@link IDEMPOTENCY_TIMEOUT_MS}); its claim is renewed every third of it */
  timeoutMs?: number;
  /** retention of a stored answer, ms (default {@link IDEMPOTENCY_RETENTION_MS}); an older one is deleted and the key is new */
  retentionMs?: number;
}

/** The options of the configuration (EDGETUNE_IDEMPOTENCY_TIMEOUT_MS, EDGETUNE_IDEMPOTENCY_RETENTION_MS). */
export function idempotencyOptions(config: Pick<Config, 'idempotencyTimeoutMs' | 'idempotencyRetentionMs'>): IdempotencyOptions {
  return { timeoutMs: config.idempotencyTimeoutMs, retentionMs: config.idempotencyRetentionMs };
}

/**
 * One statement that deletes the key rows `gone` selects (a DELETE ... RETURNING project_id, key) and clears
 * those keys from the jobs and files created under them. One statement, so a key is never deleted without
 * being cleared; raw SQL, so clearing leaves jobs.updated_at alone (the reconciler's grace periods read it).
 */
async function expireKeys(db: PrismaClient, gone: Prisma.Sql): Promise<number> {
  // PostgreSQL runs every data-modifying WITH to completion, read or not
  const [r] = await db.$queryRaw<{ keys: number }[]>`WITH gone AS (${gone}),
    j AS (UPDATE jobs SET idempotency_key = NULL FROM gone WHERE jobs.project_id = gone.project_id AND jobs.idempotency_key = gone.key),
    f AS (UPDATE files SET idempotency_key = NULL FROM gone WHERE files.project_id = gone.project_id AND files.idempotency_key = gone.key)
    SELECT count(*)::int AS keys FROM gone`;
  return r.keys;
}

// created_at is a timestamp without time zone that Prisma writes in UTC: compare with UTC ISO text (PostgreSQL ignores its zone)
const ts = (d: Date) => Prisma.sql`${d.toISOString()}::timestamp`;

/** Rows one sweep statement deletes at most: a backlog goes in batches, none holding many row locks for long. */
const SWEEP_BATCH = 1000;

/**
 * Deletes the stored answers older than `retentionMs` (completed keys whose last claim is older) and clears
 * their keys from the jobs and files created under them, in batches until none is left or `opts.stopped()`.
 * Keys still in progress are abandoned once their claim is older than both the retention and the takeover
 * timeout (a live request renews its claim every timeout / 3): they are deleted too, as an expired answer
 * would be. Safe alongside claims and other API processes' sweeps (rows another transaction holds are
 * skipped, to the next sweep).
 * @param retentionMs how long an answer is kept, ms
 * @param opts.now the time the retention counts back from, ms since the epoch (default: now); `opts.stopped` ends it between batches;
 *   `opts.timeoutMs` the takeover timeout, ms (default IDEMPOTENCY_TIMEOUT_MS)
 * @returns how many keys it deleted
 * @throws the database's errors
 */
export async function sweepIdempotencyKeys(
  db: PrismaClient,
  retentionMs: number,
  opts: { now?: number; stopped?: () => boolean; timeoutMs?: number } = {},
): Promise<number> {
  const now = opts.now ?? Date.now();
  const before = ts(new Date(now - retentionMs));
  const abandoned = ts(new Date(now - Math.max(retentionMs, opts.timeoutMs ?? IDEMPOTENCY_TIMEOUT_MS)));
  let total = 0;
  while (!opts.stopped?.()) {
    const n = await expireKeys(
      db,
      Prisma.sql`DELETE FROM idempotency_keys k USING (
      SELECT project_id, key FROM idempotency_keys
      WHERE (status IS NOT NULL AND created_at < ${before}) OR (status IS NULL AND created_at < ${abandoned})
      ORDER BY created_at LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED) old
      WHERE k.project_id = old.project_id AND k.key = old.key RETURNING k.project_id, k.key`,
    );
    total += n;
    if (n < SWEEP_BATCH) break;
  }
  return total;
}

/**
 * Runs {@link sweepIdempotencyKeys} now and every min(retention / 4, 1 h) (at least every second) until `stop`;
 * the timer does not keep the process alive, and a sweep still running is skipped rather than overlapped.
 * @param retentionMs how long an answer is kept, ms; `timeoutMs` the takeover timeout, ms
 * @param log told how many keys each sweep deleted (when any) and a sweep's error (the next sweep retries)
 */
export function startIdempotencySweeper(
  db: PrismaClient,
  retentionMs: number,
  log: { info: (o: object, m: string) => void; error: (o: object, m: string) => void },
  timeoutMs = IDEMPOTENCY_TIMEOUT_MS,
): { stop: () => Promise<void> } {
  let stopped = false;
  let running: Promise<void> | null = null;
  const sweep = () => {
    if (running || stopped) return;
    running = sweepIdempotencyKeys(db, retentionMs, { stopped: () => stopped, timeoutMs })
      .then(
        (n) => {
          if (n) log.info({ deleted: n, retentionMs }, 'expired Idempotency-Keys deleted');
        },
        (e: unknown) => log.error({ err: e }, 'Idempotency-Key sweep failed'),
      )
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(sweep, Math.max(1000, Math.min(Math.floor(retentionMs / 4), 3_600_000)));
  timer.unref();
  sweep();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

const inUse = (retryAfterMs: number) =>
  new ApiError(409, 'idempotency_key_in_use', 'A request with this Idempotency-Key is in progress; retry later', {
    param: 'Idempotency-Key',
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
  });

/** A key claimed by this request: {@link claimKey}'s answer when the request is to run. */
interface Claim {
  /** the key row's where clause that matches only while this request holds the claim */
  held: () => { projectId: string; key: string; status: null; createdAt: Date };
  /** stops renewing the claim and waits for a renewal in flight */
  settle: () => Promise<void>;
}

/**
 * Claims `key` for this request (inserts its row, takes over an abandoned one, or replaces an answer older than
 * `retentionMs`) and renews the claim until `settle`. Answers the stored response instead when the key holds one.
 * @param opts.timeoutMs takeover timeout, ms; `opts.retentionMs` how long an answer is kept, ms
 * @throws ApiError 409 idempotency_key_reused (another request under the key), 409 idempotency_key_in_use (its request still runs)
 */
async function claimKey(
  db: PrismaClient,
  req: FastifyRequest,
  key: string,
  hash: string,
  opts: Required<IdempotencyOptions>,
): Promise<Claim | { replay: Stored }> {
  const { timeoutMs, retentionMs } = opts;
  const { projectId } = authOf(req);
  const path = req.routeOptions.url ?? req.url;
  const id = { projectId, key };
  // the claim: the key row's created_at while its status is null (renewed below; every write compares it)
  let claim = new Date();
  for (let attempt = 1; ; attempt++) {
    try {
      await db.idempotencyKey.create({ data: { projectId, key, method: req.method, path, requestHash: hash, createdAt: claim } });
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== 'P2002') throw e;
    }
    const prior = await db.idempotencyKey.findUnique({ where: { projectId_key: id } });
    if (!prior) throw inUse(1000); // released just now
    if (prior.status !== null && Date.now() - prior.createdAt.getTime() >= retentionMs) {
      // an expired answer: the key is new, whatever request it answered. Deleted only as it was read, so
      // of racing requests one deletes it and the others meet the winner's row at the next insert.
      if (attempt > 2) throw inUse(1000);
      await expireKeys(
        db,
        Prisma.sql`DELETE FROM idempotency_keys WHERE project_id = ${projectId} AND key = ${key}
        AND status IS NOT NULL AND created_at = ${ts(prior.createdAt)} RETURNING project_id, key`,
      );
      claim = new Date();
      continue;
    }
    if (prior.requestHash !== hash || prior.method !== req.method || prior.path !== path) {
      throw new ApiError(409, 'idempotency_key_reused', 'This Idempotency-Key was used with a different request', {
        param: 'Idempotency-Key',
      });
    }
    if (prior.status !== null) return { replay: { status: prior.status, body: prior.body } };
    const age = Date.now() - prior.createdAt.getTime();
    if (age < timeoutMs) throw inUse(timeoutMs - age);
    // abandoned (its request's process died): take it over, once however many retries race
    claim = new Date();
    const took = await db.idempotencyKey.updateMany({
      where: { ...id, status: null, createdAt: prior.createdAt },
      data: { createdAt: claim },
    });
    if (!took.count) throw inUse(1000);
    req.log.warn({ idempotencyKey: key, claimedAt: prior.createdAt }, 'Idempotency-Key taken over from a request that stopped');
    break;
  }
  // renew the claim while the handler runs, so that only a dead request's key can be taken over
  let renewing: Promise<unknown> = Promise.resolve();
  let lost = false;
  const renew = () => {
    renewing = renewing
      .then(async () => {
        if (lost) return;
        const next = new Date();
        const r = await db.idempotencyKey.updateMany({ where: { ...id, status: null, createdAt: claim }, data: { createdAt: next } });
        if (r.count) claim = next;
        else lost = true;
      })
      .catch(() => {}); // a failed renewal is retried at the next tick
  };
  const timer = setInterval(renew, Math.max(1, Math.floor(timeoutMs / 3)));
  return {
    held: () => ({ ...id, status: null, createdAt: claim }),
    settle: async () => {
      clearInterval(timer);
      await renewing;
    },
  };
}

const replay = (reply: FastifyReply, r: Stored) => reply.code(r.status).header('idempotent-replayed', 'true').send(r.body);

const withDefaults = (o: IdempotencyOptions): Required<IdempotencyOptions> => ({
  timeoutMs: o.timeoutMs ?? IDEMPOTENCY_TIMEOUT_MS,
  retentionMs: o.retentionMs ?? IDEMPOTENCY_RETENTION_MS,
});

/**
 * Runs `handler` once per (project, Idempotency-Key) and sends its answer; replays it on repeats for
 * `opts.retentionMs`, after which the key is new (the handler runs again, whatever the request).
 * Without the header it just runs the handler. A handler error releases the key. A key left in progress
 * by a request that stopped renewing it for `opts.timeoutMs` (its API process died) is taken over.
 * The answer is stored after the handler, so a request that dies in between leaves its side effects to a
 * retry that reruns the handler: for handlers whose side effects can be found again (see {@link idempotentTx}).
 * @throws ApiError 400 invalid_idempotency_key, 409 idempotency_key_reused / idempotency_key_in_use; the handler's errors
 */
export async function idempotent(
  db: PrismaClient,
  req: FastifyRequest,
  reply: FastifyReply,
  hash: string,
  handler: () => Promise<Stored>,
  opts: IdempotencyOptions = {},
): Promise<FastifyReply> {
  const key = idempotencyKeyOf(req);
  if (!key) {
    const r = await handler();
    return reply.code(r.status).send(r.body);
  }
  const c = await claimKey(db, req, key, hash, withDefaults(opts));
  if ('replay' in c) return replay(reply, c.replay);
  let r: Stored;
  try {
    r = await handler();
  } catch (e) {
    await c.settle();
    await db.idempotencyKey.deleteMany({ where: c.held() }).catch(() => {});
    throw e;
  }
  await c.settle();
  const stored = await db.idempotencyKey.updateMany({ where: c.held(), data: { status: r.status, body: r.body as object } });
  if (!stored.count)
    req.log.warn({ idempotencyKey: key }, 'Idempotency-Key was taken over while this request ran; its answer is not stored');
  return reply.code(r.status).send(r.body);
}

/**
 * Limit of {@link idempotentTx}'s transaction, ms: Prisma's 5 s default would roll back a handler that
 * merely waits on a lock; one that takes longer is rolled back (an error, the key released).
 */
const TX_TIMEOUT_MS = 30_000;

/** Thrown inside {@link idempotentTx}'s transaction to roll it back: the request lost its claim. */
class ClaimLost extends Error {}

/**
 * {@link idempotent} for handlers whose only side effects are writes through `tx`: the handler's writes
 * and the stored answer commit in one transaction, so a request that dies or loses its claim (taken over)
 * leaves nothing behind, and the request that stores the answer is the one whose writes stay.
 * Without the header it runs the handler in a transaction too.
 * @throws ApiError 409 idempotency_key_in_use also when the claim was taken over while the handler ran
 *   (its writes rolled back; a repeat gets the answer of the request that took over);
 *   400 invalid_idempotency_key, 409 idempotency_key_reused; the handler's errors
 */
export async function idempotentTx(
  db: PrismaClient,
  req: FastifyRequest,
  reply: FastifyReply,
  hash: string,
  handler: (tx: Prisma.TransactionClient) => Promise<Stored>,
  opts: IdempotencyOptions = {},
): Promise<FastifyReply> {
  const key = idempotencyKeyOf(req);
  if (!key) {
    const r = await db.$transaction((tx) => handler(tx), { timeout: TX_TIMEOUT_MS });
    return reply.code(r.status).send(r.body);
  }
  const c = await claimKey(db, req, key, hash, withDefaults(opts));
  if ('replay' in c) return replay(reply, c.replay);
  let r: Stored;
  try {
    r = await db.$transaction(
      async (tx) => {
        const answer = await handler(tx);
        // renewals write the key row outside this transaction: none may wait on the row lock the store below takes
        await c.settle();
        const stored = await tx.idempotencyKey.updateMany({
          where: c.held(),
          data: { status: answer.status, body: answer.body as object },
        });
        if (!stored.count) throw new ClaimLost();
        return answer;
      },
      { timeout: TX_TIMEOUT_MS },
    );
  } catch (e) {
    await c.settle();
    if (e instanceof ClaimLost) {
      req.log.warn({ idempotencyKey: key }, 'Idempotency-Key was taken over while this request ran; its writes are rolled back');
      throw inUse(1000);
    }
    await db.idempotencyKey.deleteMany({ where: c.held() }).catch(() => {});
    throw e;
  }
  return reply.code(r.status).send(r.body);
}
