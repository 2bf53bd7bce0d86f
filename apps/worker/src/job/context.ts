/** What every step of a job's run shares: the process's connections, the claimed row, its log and events. */
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type { Config, JobError, QueueJobData } from '@edgetune/core';
import { addEvents, fencedWrite, withDbRetry, type JobFence, type NewJobEvent, type Prisma, type PrismaClient } from '@edgetune/store';

/** What a job run needs. */
export interface RunContext {
  config: Config;
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  workerId: string;
  /** the engine (loaded lazily, once per process: it pulls TF.js), its backend set to `blasThreads` (default: the engine's) */
  engine: (blasThreads?: number) => Promise<typeof import('@edgetune/engine')>;
  /**
   * this process's RSS once the engine was first loaded, before its first job, bytes: the planner's base
   * (DeviceProfile.baseRssBytes; a sandbox also holds Prisma, BullMQ and Redis clients). Undefined before the
   * engine is loaded, or where no such reading exists (the forecast then assumes a bare engine process).
   */
  baseRssBytes?: () => number | undefined;
  log: (line: string) => void;
}

/** How a run ended (`superseded`: a newer attempt owns the job; this one stopped without writing). */
export type RunOutcome = 'succeeded' | 'failed' | 'cancelled' | 'requeued' | 'skipped' | 'superseded';

/** Reasons passed to the abort signal (`superseded`: a newer attempt owns the job). */
export type AbortReason = 'cancel' | 'shutdown' | 'superseded';

/** A `jobs` row. */
export type JobRow = Prisma.JobGetPayload<object>;

/** One claimed job's run. */
export interface JobRun {
  ctx: RunContext;
  id: string;
  /** the row as read before the claim (its `status`, `startedAt` and `attempts` are the earlier ones) */
  job: JobRow;
  /** this run's attempt number, 1-based: its fencing token (every write checks it, store fence.ts) */
  attempt: number;
  /** the highest step (and validation step) whose metrics events earlier attempts recorded: not recorded again */
  recorded: { step: number; evalStep: number };
  /** the job's base model folder on this worker */
  modelDir: string;
  /** logs `[job id] line` */
  log: (line: string) => void;
  /** logs the milliseconds since the claim with `what` */
  tick: (what: string) => void;
  /**
   * appends events to the job (and nudges its listeners) while this attempt owns it, retrying while the
   * database is unreachable; `statuses`: those the job may be in (default: running, cancelling)
   */
  events: (list: NewJobEvent[], statuses?: readonly string[]) => Promise<void>;
  /**
   * runs `fn` in a transaction that holds the job's row while this attempt owns it, retrying while the
   * database is unreachable.
   * @throws StaleAttemptError when a newer attempt owns the job (the run then stops without writing more).
   */
  write: <T>(fn: (tx: Prisma.TransactionClient) => Promise<T>, statuses?: readonly string[]) => Promise<T>;
}

/** What a step returns when the job cannot go on: the error the job then fails with. */
export interface StepFailure {
  error: JobError;
}

/** Appends `list` to job `jobId`'s events. @throws database errors (Prisma) as they come. */
export function addJobEvents(ctx: RunContext, jobId: string, list: NewJobEvent[]): Promise<void> {
  return addEvents(ctx.db, ctx.redis, ctx.config.queuePrefix, jobId, list);
}

/** The run of `job`, claimed now by this worker as attempt `attempt`, after earlier attempts `recorded` metrics up to a step. */
export function newRun(ctx: RunContext, job: JobRow, attempt: number, recorded: JobRun['recorded']): JobRun {
  const t0 = Date.now();
  const log = (line: string) => ctx.log(`[${job.id}] ${line}`);
  const fence = (statuses?: readonly string[]): JobFence => ({ attempt, ...(statuses ? { statuses } : {}) });
  const onRetry = (e: Error) => log(`database unreachable, retrying: ${e.message.split('\n')[0]}`);
  return {
    ctx,
    id: job.id,
    job,
    attempt,
    recorded,
    modelDir: join(ctx.config.modelsDir, job.model),
    log,
    tick: (what) => log(`+${Date.now() - t0} ms: ${what}`),
    events: (list, statuses) =>
      withDbRetry(() => addEvents(ctx.db, ctx.redis, ctx.config.queuePrefix, job.id, list, fence(statuses)), { onRetry }),
    write: (fn, statuses) => withDbRetry(() => fencedWrite(ctx.db, job.id, fence(statuses), fn), { onRetry }),
  };
}
