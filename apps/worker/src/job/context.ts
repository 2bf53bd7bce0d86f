/** What every step of a job's run shares: the process's connections, the claimed row, its log and events. */
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type { Config, JobError, QueueJobData } from '@edgetune/core';
import { addEvents, type NewJobEvent, type Prisma, type PrismaClient } from '@edgetune/store';

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

/** How a run ended. */
export type RunOutcome = 'succeeded' | 'failed' | 'cancelled' | 'requeued' | 'skipped';

/** Reasons passed to the abort signal. */
export type AbortReason = 'cancel' | 'shutdown';

/** A `jobs` row. */
export type JobRow = Prisma.JobGetPayload<object>;

/** One claimed job's run. */
export interface JobRun {
  ctx: RunContext;
  id: string;
  /** the row as read before the claim (its `status`, `startedAt` and `attempts` are the earlier ones) */
  job: JobRow;
  /** this run's attempt number, 1-based */
  attempt: number;
  /** the job's base model folder on this worker */
  modelDir: string;
  /** logs `[job id] line` */
  log: (line: string) => void;
  /** logs the milliseconds since the claim with `what` */
  tick: (what: string) => void;
  /** appends events to the job (and nudges its listeners) */
  events: (list: NewJobEvent[]) => Promise<void>;
}

/** What a step returns when the job cannot go on: the error the job then fails with. */
export interface StepFailure {
  error: JobError;
}

/** Appends `list` to job `jobId`'s events. @throws database errors (Prisma) as they come. */
export function addJobEvents(ctx: RunContext, jobId: string, list: NewJobEvent[]): Promise<void> {
  return addEvents(ctx.db, ctx.redis, ctx.config.queuePrefix, jobId, list);
}

/** The run of `job`, claimed now by this worker. */
export function newRun(ctx: RunContext, job: JobRow): JobRun {
  const t0 = Date.now();
  const log = (line: string) => ctx.log(`[${job.id}] ${line}`);
  return {
    ctx,
    id: job.id,
    job,
    attempt: job.attempts + 1,
    modelDir: join(ctx.config.modelsDir, job.model),
    log,
    tick: (what) => log(`+${Date.now() - t0} ms: ${what}`),
    events: (list) => addJobEvents(ctx, job.id, list),
  };
}
