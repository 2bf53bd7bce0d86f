/**
 * The worker process: registers its base models, consumes the queue with sandboxed processors, relays
 * cancel requests to the running job, and on stop checkpoints running jobs and re-queues them.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import {
  addEvents, channels, createPrisma, isTerminal, loadConfig, QUEUE_NAME, redisConnection, registerModels, scanModels,
  type ControlMessage, type QueueJobData,
} from '@edgetune/api/shared';

/** A running worker. */
export interface RunningWorker {
  id: string;
  worker: Worker<QueueJobData>;
  /** checkpoints and re-queues running jobs, then closes (idempotent) */
  stop: () => Promise<void>;
}

/** Starts a worker with the configuration in `env`. */
export async function startWorker(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = (l) => console.error(l)): Promise<RunningWorker> {
  const config = loadConfig(env);
  const id = `${config.hostName}:${process.pid}`;
  process.env.EDGETUNE_WORKER_ID = id; // inherited by the sandboxed children
  const db = createPrisma(config.databaseUrl, { max: 3 });
  const models = scanModels(config.modelsDir, log);
  await registerModels(db, models, `worker@${config.hostName}`);
  log(`[worker ${id}] base models in ${config.modelsDir}: ${models.map((m) => m.id).join(', ') || '(none)'}`);

  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const processorFile = fileURLToPath(new URL(`./processor.${ext}`, import.meta.url));
  const worker = new Worker<QueueJobData>(QUEUE_NAME, processorFile, {
    connection: redisConnection(config.redisUrl),
    prefix: config.queuePrefix,
    concurrency: config.workerConcurrency,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    maxStalledCount: config.maxStalledCount,
    useWorkerThreads: false,
  });
  const active = new Map<string, string>(); // db job id -> queue job id
  const pub = redisConnection(config.redisUrl);
  pub.on('error', () => {});
  worker.on('active', (job) => { active.set(job.data.jobId, job.id!); });
  worker.on('completed', (job) => { active.delete(job.data.jobId); });
  worker.on('error', (err) => log(`[worker ${id}] ${err.message}`));
  worker.on('failed', (job, err) => {
    if (!job) return;
    active.delete(job.data.jobId);
    // The processor records job failures itself; this covers what it could not (crash, too many stalls).
    void (async () => {
      const row = await db.job.findUnique({ where: { id: job.data.jobId }, select: { status: true } });
      if (!row || isTerminal(row.status)) return;
      const stalled = /stalled/i.test(err.message);
      const error = { code: stalled ? 'worker_lost' : 'worker_error', message: err.message, param: null };
      await db.job.updateMany({ where: { id: job.data.jobId, status: row.status }, data: { status: 'failed', error, finishedAt: new Date(), etaSeconds: null } });
      await addEvents(db, pub, config.queuePrefix, job.data.jobId, [{ type: 'status', level: 'error', message: `Job failed: ${err.message}`, data: { status: 'failed', error } }]);
    })().catch((e) => log(`[worker ${id}] failed to record failure: ${(e as Error).message}`));
  });

  const sub = redisConnection(config.redisUrl);
  sub.on('error', () => {});
  sub.on('message', (_ch: string, raw: string) => {
    try {
      const msg = JSON.parse(raw) as ControlMessage;
      const queueJobId = msg.type === 'cancel' ? active.get(msg.job_id) : undefined;
      if (queueJobId) worker.cancelJob(queueJobId, 'cancel');
    } catch {
      // not ours
    }
  });
  await sub.subscribe(channels(config.queuePrefix).control);
  await worker.waitUntilReady();

  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= (async () => {
    log(`[worker ${id}] stopping: running jobs checkpoint their current step and go back to the queue`);
    worker.cancelAllJobs('shutdown');
    await worker.close();
    sub.disconnect();
    pub.disconnect();
    await db.$disconnect();
  })());
  return { id, worker, stop };
}
