/**
 * BullMQ sandboxed processor: runs in a child process per worker slot, so the engine's CPU-bound steps
 * never block the parent's lock renewal. Holds its own database and Redis connections, and loads the
 * engine (TF.js) on its first job, setting this process's V8 heap policy then.
 */
import { Queue, type SandboxedJob } from 'bullmq';
import { loadConfig, QUEUE_NAME, seedFingerprintCache, type QueueJobData } from '@edgetune/core';
import { createPrisma, dropFinishedCheckpoints, redisConnection, StoreWatch, storeAddress, watchRedis } from '@edgetune/store';
import { INTERRUPTED } from './reconcile.js';
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
  // one line per Redis outage, not an error trace per reconnect attempt (the job goes on meanwhile)
  const watch = new StoreWatch('Redis', storeAddress(config.redisUrl), (line) => console.error(line));
  watchRedis(redis, watch);
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', (e) => watch.down(e));
  ctx = {
    config,
    db: createPrisma(config.databaseUrl, { max: 3 }),
    redis,
    queue,
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

/**
 * Processes one queue job: the database row it names is the job. Once the job has ended its checkpoints are
 * deleted unless it asked to keep them (a re-queued job keeps them to resume).
 */
export default async function process_(job: SandboxedJob<QueueJobData>, _token?: string, signal?: AbortSignal): Promise<RunOutcome> {
  const c = context();
  // An error that escapes the run is the infrastructure's (the run records the job's own): the delivery
  // fails as interrupted, and the worker re-queues the job from its last checkpoint (reconcile.ts).
  const outcome = await runJob(c, job.data.jobId, signal, job.id).catch((e: Error) => {
    throw new Error(`${INTERRUPTED} ${e.message}`);
  });
  const dropped = await dropFinishedCheckpoints(c.db, job.data.jobId).catch((e: Error) => {
    c.log(`[${job.data.jobId}] checkpoints not deleted: ${e.message}`);
    return 0;
  });
  if (dropped) c.log(`[${job.data.jobId}] ${outcome}: ${dropped} checkpoints deleted`);
  return outcome;
}
