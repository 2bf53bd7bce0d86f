/**
 * Reconciles job rows with BullMQ's state of their queue jobs, so that no accepted job is lost when a
 * process dies at the wrong moment. PostgreSQL is the system of record; BullMQ only delivers. A job
 * that is not finished in the database but whose queue job BullMQ will never deliver again is settled:
 *
 * - `cancelling` -> `cancelled` when its queue job failed, completed or is gone (its worker died
 *   before it stopped the job: nothing runs it any more);
 * - `queued`/`running` -> back in the queue, resuming from its latest checkpoint, when its queue job failed
 *   because the job's process died (a signal such as the OOM killer's SIGKILL) or the run was interrupted by
 *   its stores (a database unreachable for longer than the run retries); after {@link MAX_CRASH_RESUMES}
 *   such resumes it fails with `worker_crashed` instead (a job that kills its process every time);
 * - `queued`/`running` -> `failed` with `worker_lost` when its queue job failed because it stalled more
 *   than `EDGETUNE_MAX_STALLED_COUNT` times (the documented limit on worker deaths), or `worker_error` when
 *   the processor failed otherwise;
 * - `queued`/`running` -> back in the queue under a new queue job id, resuming from its latest
 *   checkpoint, when its queue job is gone or completed without finishing the row (e.g. a process died
 *   between writing `queued` and enqueueing, or Redis lost the queue job);
 * - `validating_files` -> `failed` with `api_interrupted` when the row is older than
 *   {@link VALIDATING_GRACE_MS}: the API process that created it died before queueing it. Such a job was
 *   never accepted (`POST /v1/jobs` answers 201 only once the row is `queued`, so its client got an
 *   error or no answer and creates it again, possibly under the same Idempotency-Key); running it as
 *   well would make a duplicate the client never asked for, so it is failed (kept, not deleted, so that
 *   it and its events stay visible) rather than queued.
 *
 * Queue jobs that are waiting, delayed or active are left to BullMQ (its stalled checker redelivers the
 * jobs of dead workers). Every change is a compare-and-set on the row's status and queue job id, so any
 * number of workers may reconcile at once and a job is settled or re-queued once.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobError, QueueJobData } from '@edgetune/core';
import { addEvents, enqueueJob, type PrismaClient } from '@edgetune/store';

/** What reconciling needs: the database, the queue, and Redis for event nudges. */
export interface ReconcileDeps {
  db: PrismaClient;
  queue: Queue<QueueJobData>;
  /** connection for the pub/sub nudge of new events (null: none) */
  redis: Redis | null;
  prefix: string;
}

/** One job the reconciler changed. */
export interface Reconciled {
  jobId: string;
  /** the row's status before */
  from: string;
  /** BullMQ's state of the row's queue job (`missing` when BullMQ has no such job) */
  queueState: string;
  /** the row's status after */
  to: 'cancelled' | 'failed' | 'queued';
}

/** The job error of a job whose creating API process died before queueing it. */
export const API_INTERRUPTED: JobError = {
  code: 'api_interrupted',
  message: 'The API stopped while creating this job, before it was queued; the job was never accepted and will not run. Create it again.',
  param: null,
};

/** Rows changed this recently are skipped: the API or a worker may be between writing the row and enqueueing. */
export const RECONCILE_GRACE_MS = 30_000;
/** `validating_files` rows this recent are skipped: their `POST /v1/jobs` may still be under way (it takes milliseconds). */
export const VALIDATING_GRACE_MS = 60_000;

/** How a delivery whose run was interrupted by its stores fails (processor.ts prefixes the error with it). */
export const INTERRUPTED = 'job interrupted:';
/** Times a job goes back to the queue after its process died or its run was interrupted, before it fails with `worker_crashed`. */
export const MAX_CRASH_RESUMES = 3;
/** Failure reasons of a delivery whose process died (BullMQ's sandbox: `Unexpected exit code: <code> signal: <signal>`) or was interrupted. */
const CRASHED = /^(?:Unexpected exit code|job interrupted:)/;

/** Statuses of an accepted job that is not finished. */
const OPEN_STATUSES = ['queued', 'running', 'cancelling'];
/** BullMQ states in which BullMQ still delivers (or is running) the job. */
const LIVE_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused']);
const STALLED = /stalled/i;

type OpenRow = { id: string; status: string; queueJobId: string | null };

/** The job error of a queue job that failed with `reason`. */
function lostError(reason: string): JobError {
  if (CRASHED.test(reason))
    return {
      code: 'worker_crashed',
      message: `The job's process died or was interrupted ${MAX_CRASH_RESUMES + 1} times; last: ${reason}`,
      param: null,
    };
  return STALLED.test(reason)
    ? {
        code: 'worker_lost',
        message: `The job's worker was lost more often than EDGETUNE_MAX_STALLED_COUNT allows (${reason})`,
        param: null,
      }
    : { code: 'worker_error', message: `The worker could not run the job: ${reason}`, param: null };
}

/** How many times job `jobId` went back to the queue after its process died or its run was interrupted. */
function crashResumes(db: PrismaClient, jobId: string): Promise<number> {
  return db.jobEvent.count({ where: { jobId, type: 'status', data: { path: ['requeued_after'], equals: 'crash' } } });
}

/**
 * Settles `row`, whose queue job BullMQ will not deliver again (`queueState`; `reason`: its failure).
 * @returns the new status, or null when the row changed meanwhile (someone else settled it).
 */
async function settle(deps: ReconcileDeps, row: OpenRow, queueState: string, reason: string | null): Promise<Reconciled['to'] | null> {
  const { db } = deps;
  const where = { id: row.id, status: row.status, queueJobId: row.queueJobId };
  const now = new Date();
  if (row.status === 'validating_files') {
    const error = API_INTERRUPTED;
    const r = await db.job.updateMany({ where, data: { status: 'failed', error: error as object, finishedAt: now, etaSeconds: null } });
    if (!r.count) return null;
    await addEvents(db, deps.redis, deps.prefix, row.id, [
      { type: 'status', level: 'error', message: `Job failed: ${error.message}`, data: { status: 'failed', error } },
    ]);
    return 'failed';
  }
  if (row.status === 'cancelling') {
    const r = await db.job.updateMany({ where, data: { status: 'cancelled', finishedAt: now, etaSeconds: null } });
    if (!r.count) return null;
    await addEvents(db, deps.redis, deps.prefix, row.id, [
      {
        type: 'status',
        message: 'Job cancelled (its worker stopped before acknowledging the cancel)',
        data: { status: 'cancelled', queue_state: queueState },
      },
    ]);
    return 'cancelled';
  }
  const crashed = queueState === 'failed' && CRASHED.test(reason ?? '') && (await crashResumes(db, row.id)) < MAX_CRASH_RESUMES;
  if (queueState === 'failed' && !crashed) {
    const error = lostError(reason ?? 'unknown failure');
    const r = await db.job.updateMany({ where, data: { status: 'failed', error: error as object, finishedAt: now, etaSeconds: null } });
    if (!r.count) return null;
    await addEvents(db, deps.redis, deps.prefix, row.id, [
      { type: 'status', level: 'error', message: `Job failed: ${error.message}`, data: { status: 'failed', error } },
    ]);
    return 'failed';
  }
  // crashed, gone, or completed without finishing the row: back to the queue, from the latest checkpoint
  const last = await db.checkpoint.findFirst({ where: { jobId: row.id }, orderBy: { step: 'desc' }, select: { step: true } });
  const step = last?.step ?? 0;
  const queueJobId = `${row.id}-q${now.getTime().toString(36)}`;
  const r = await db.job.updateMany({ where, data: { status: 'queued', queueJobId, step, etaSeconds: null } });
  if (!r.count) return null;
  await addEvents(db, deps.redis, deps.prefix, row.id, [
    crashed
      ? {
          type: 'status',
          level: 'warn',
          message: `The job's process died or was interrupted (${reason}); job re-queued, it resumes from step ${step}`,
          data: { status: 'queued', resume_step: step, queue_state: queueState, requeued_after: 'crash' },
        }
      : {
          type: 'status',
          level: 'warn',
          message: `The job's queue entry ${row.queueJobId ?? '(none)'} was lost (${queueState}); job re-queued, it resumes from step ${step}`,
          data: { status: 'queued', resume_step: step, queue_state: queueState },
        },
  ]);
  // If this throws, the row names a queue job that does not exist: the next pass re-queues it again.
  await enqueueJob(deps.queue, row.id, queueJobId);
  return 'queued';
}

/**
 * Settles job `jobId` after its queue job `queueJobId` failed for good with `reason` (the worker's
 * `failed` event: the job's process died, or BullMQ gave up on a job that stalled too often): a
 * `cancelling` job ends `cancelled`, a `queued`/`running` one goes back to the queue when its process
 * died (at most {@link MAX_CRASH_RESUMES} times), else `failed` (`worker_lost` for stalls, `worker_crashed`,
 * else `worker_error`). Does nothing for a finished job, one that has moved on to another queue job, or,
 * with `workerId` (the worker whose delivery failed), a job another worker's attempt is running now.
 * @returns the new status, or null when nothing changed.
 * @throws database errors (Prisma) as they come.
 */
export async function settleFailedQueueJob(
  deps: ReconcileDeps,
  jobId: string,
  queueJobId: string,
  reason: string,
  workerId?: string,
): Promise<Reconciled['to'] | null> {
  const row = await deps.db.job.findUnique({ where: { id: jobId }, select: { id: true, status: true, queueJobId: true, workerId: true } });
  if (!row || !OPEN_STATUSES.includes(row.status) || (row.queueJobId !== null && row.queueJobId !== queueJobId)) return null;
  if (workerId && row.status === 'running' && row.workerId !== workerId) return null;
  return settle(deps, { id: row.id, status: row.status, queueJobId: row.queueJobId }, 'failed', reason);
}

/**
 * One reconciliation pass over every unfinished job not changed in the last `graceMs` (default
 * {@link RECONCILE_GRACE_MS}) and every `validating_files` job not changed in the last
 * `validatingGraceMs` (default {@link VALIDATING_GRACE_MS}): reads its queue job's state with
 * `Queue.getJob` / `Job.getState` and settles or re-queues the jobs BullMQ will not deliver again, and
 * fails the jobs an API left in `validating_files` (see the module comment).
 * @returns the jobs it changed.
 * @throws database or Redis errors as they come (a later pass picks up where this one stopped).
 */
export async function reconcileJobs(
  deps: ReconcileDeps,
  opts: { graceMs?: number; validatingGraceMs?: number } = {},
): Promise<Reconciled[]> {
  const now = Date.now();
  const before = new Date(now - (opts.graceMs ?? RECONCILE_GRACE_MS));
  const validatingBefore = new Date(now - (opts.validatingGraceMs ?? VALIDATING_GRACE_MS));
  const rows = await deps.db.job.findMany({
    where: {
      OR: [
        { status: { in: OPEN_STATUSES }, updatedAt: { lte: before } },
        { status: 'validating_files', updatedAt: { lte: validatingBefore } },
      ],
    },
    select: { id: true, status: true, queueJobId: true },
    orderBy: { seq: 'asc' },
  });
  const out: Reconciled[] = [];
  for (const row of rows) {
    const qj = row.queueJobId ? await deps.queue.getJob(row.queueJobId) : undefined;
    const queueState = qj ? await qj.getState() : 'missing';
    if (LIVE_STATES.has(queueState)) continue;
    const to = await settle(deps, row, queueState, qj?.failedReason ?? null);
    if (to) out.push({ jobId: row.id, from: row.status, queueState, to });
  }
  return out;
}
