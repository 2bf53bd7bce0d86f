/**
 * Fencing a job's attempts: the worker that claims a job increments its `attempts` and keeps the number;
 * every write of that run (events, progress, checkpoints, the final status) locks the job's row, checks
 * that `attempts` is still its number and the status one it may write in, and writes in the same
 * transaction. A newer claim waits for the lock, so once it commits no write of an older attempt lands.
 */
import { isDatabaseUnavailable } from './availability.js';
import type { Prisma, PrismaClient } from './db.js';

/** The attempt a write belongs to, and the statuses the job must be in for it to land. */
export interface JobFence {
  /** the job's `attempts` when this attempt claimed it */
  attempt: number;
  /** default: `running` and `cancelling` */
  statuses?: readonly string[];
}

/** Statuses in which a running attempt writes. */
export const ATTEMPT_STATUSES: readonly string[] = ['running', 'cancelling'];

/** Thrown when a write of a job's attempt is refused: a newer attempt owns the job, or it left the fenced statuses. */
export class StaleAttemptError extends Error {
  override name = 'StaleAttemptError';
  constructor(
    readonly jobId: string,
    readonly attempt: number,
    /** the row's attempts and status now (null: the job is gone) */
    readonly current: { attempts: number; status: string } | null,
  ) {
    super(
      current
        ? `attempt ${attempt} of job ${jobId} is stale (the job is ${current.status}, attempt ${current.attempts})`
        : `job ${jobId} no longer exists`,
    );
  }
}

/** How long a fenced transaction may sit idle holding the job's row before PostgreSQL closes its connection, ms. */
const IDLE_IN_LOCK_MS = 10_000;

/**
 * Locks job `jobId`'s row for the rest of transaction `tx` and checks `fence`.
 * @throws StaleAttemptError when the row is gone, its attempt is not `fence.attempt` or its status not in `fence.statuses`.
 */
export async function lockAttempt(tx: Prisma.TransactionClient, jobId: string, fence: JobFence): Promise<void> {
  // a writer frozen inside the transaction (SIGSTOP, a swapped-out box) must not hold the row from a newer claim
  await tx.$executeRawUnsafe(`SET LOCAL idle_in_transaction_session_timeout = ${IDLE_IN_LOCK_MS}`);
  const rows = await tx.$queryRaw<{ attempts: number; status: string }[]>`
    SELECT attempts, status FROM jobs WHERE id = ${jobId} FOR NO KEY UPDATE`;
  const row = rows[0] ?? null;
  if (!row || row.attempts !== fence.attempt || !(fence.statuses ?? ATTEMPT_STATUSES).includes(row.status))
    throw new StaleAttemptError(jobId, fence.attempt, row);
}

/**
 * Runs `fn` in one transaction that first locks job `jobId`'s row and checks `fence` ({@link lockAttempt}).
 * @returns what `fn` returns.
 * @throws StaleAttemptError when the fence does not hold (nothing is written); database errors as they come.
 */
export async function fencedWrite<T>(
  db: PrismaClient,
  jobId: string,
  fence: JobFence,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
): Promise<T> {
  return db.$transaction(async (tx) => {
    await lockAttempt(tx, jobId, fence);
    return fn(tx);
  });
}

/** Codes of a lost race that the same statement wins when retried (pg serialization failure, deadlock; Prisma's write conflict). */
const RETRYABLE_CODES = new Set(['40001', '40P01', 'P2034']);

/**
 * Whether `err` is worth retrying: the database is unreachable or restarting ({@link isDatabaseUnavailable}),
 * or the statement lost a race; not a statement that is wrong.
 */
export function isTransientDbError(err: unknown): boolean {
  if (isDatabaseUnavailable(err)) return true;
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const o = e as { code?: unknown; meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } } };
    if (typeof o.code === 'string' && RETRYABLE_CODES.has(o.code)) return true;
    if (RETRYABLE_CODES.has(String(o.meta?.driverAdapterError?.cause?.originalCode ?? ''))) return true;
  }
  return false;
}

/** How long {@link withDbRetry} keeps retrying by default, ms: a database restart takes seconds, a failover a minute or two. */
export const DB_RETRY_MS = 180_000;

/**
 * Runs `fn`, and again after a backoff (250 ms doubling to 5 s) while it fails with a transient database
 * error ({@link isTransientDbError}), for at most `opts.maxMs` (default {@link DB_RETRY_MS}).
 * @throws the last error once out of time, and any other error at once.
 */
export async function withDbRetry<T>(fn: () => Promise<T>, opts: { maxMs?: number; onRetry?: (err: Error) => void } = {}): Promise<T> {
  const end = Date.now() + (opts.maxMs ?? DB_RETRY_MS);
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await fn();
    } catch (e) {
      if (!isTransientDbError(e) || Date.now() + delay > end) throw e;
      opts.onRetry?.(e as Error);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
