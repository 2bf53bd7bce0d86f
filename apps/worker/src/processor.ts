/**
 * BullMQ sandboxed processor: runs in a child process per worker slot, so the engine's CPU-bound steps
 * never block the parent's lock renewal. Holds its own database and Redis connections, and loads the
 * engine (TF.js) on its first job, setting this process's V8 heap policy then.
 */
import { Queue, type SandboxedJob } from 'bullmq';
import { loadConfig, QUEUE_NAME, seedFingerprintCache, type QueueJobData } from '@edgetune/core';
import { createPrisma, redisConnection } from '@edgetune/store';
import { runJob, type RunContext, type RunOutcome } from './run-job.js';

let ctx: RunContext | null = null;
let engine: Promise<typeof import('@edgetune/engine')> | null = null;
/** RSS right after the engine's first load, before any job ran here (the wasm heap only grows after) */
let baseRss: number | undefined;

// The parent worker died (e.g. kill -9): stop at once; another worker resumes the job from its checkpoint.
process.once('disconnect', () => process.exit(1));

function context(): RunContext {
  if (ctx) return ctx;
  const config = loadConfig();
  // model file hashes the parent worker made at startup (a job's fingerprint then only stats the files)
  seedFingerprintCache(process.env.EDGETUNE_FINGERPRINT_CACHE);
  const redis = redisConnection(config.redisUrl);
  ctx = {
    config,
    db: createPrisma(config.databaseUrl, { max: 3 }),
    redis,
    queue: new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: config.queuePrefix }),
    workerId: process.env.EDGETUNE_WORKER_ID ?? `${config.hostName}:${process.ppid}`,
    // A job's `device.threads` (or EDGETUNE_DEVICE_THREADS) sets the BLAS threads; initBackend is a no-op when they are unchanged.
    engine: async (blasThreads) => {
      engine ??= loadEngine();
      const m = await engine;
      await m.initBackend({ quiet: process.env.EDGETUNE_QUIET === '1', ...(blasThreads ? { blasThreads } : {}) });
      baseRss ??= process.memoryUsage.rss();
      return m;
    },
    baseRssBytes: () => baseRss,
    log: (line) => console.error(line),
  };
  return ctx;
}

/**
 * Imports the engine and makes V8 favour memory over speed in this process (engine favourMemoryOverSpeed):
 * a process-wide flag, so it is set here, before the first job tunes; the planner's RSS terms assume it.
 */
async function loadEngine(): Promise<typeof import('@edgetune/engine')> {
  const m = await import('@edgetune/engine');
  m.favourMemoryOverSpeed();
  return m;
}

/** Processes one queue job: the database row it names is the job. */
export default async function process_(job: SandboxedJob<QueueJobData>, _token?: string, signal?: AbortSignal): Promise<RunOutcome> {
  return runJob(context(), job.data.jobId, signal, job.id);
}
