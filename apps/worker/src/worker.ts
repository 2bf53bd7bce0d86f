/**
 * The worker process: registers its base models and its device (`workers`, refreshed every heartbeat: the
 * API plans jobs for it), consumes the queue with sandboxed processors, relays
 * cancel requests to the running job, serves the tuned models of its base models (serving/), reconciles jobs
 * BullMQ no longer delivers with their rows (at startup, every EDGETUNE_RECONCILE_INTERVAL_MS, and when a
 * queue job fails: reconcile.ts), and on stop checkpoints running jobs and re-queues them.
 */
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import {
  channels,
  fingerprintCacheSnapshot,
  loadConfig,
  sweepScratchDirs,
  QUEUE_NAME,
  scanModels,
  type ControlMessage,
  type QueueJobData,
  type WorkerDevice,
} from '@edgetune/core';
import {
  createPrisma,
  heartbeatWorker,
  isStoreUnavailable,
  redisConnection,
  registerModels,
  removeWorker,
  StoreWatch,
  storeAddress,
  waitForDatabase,
  waitForRedis,
  watchRedis,
} from '@edgetune/store';
import { probeDevice, workerDevice, type ProbedDevice } from './device.js';
import { reconcileJobs, settleFailedQueueJob, type ReconcileDeps } from './reconcile.js';
import { startServing } from './serving/workers.js';

/** A running worker. */
export interface RunningWorker {
  id: string;
  worker: Worker<QueueJobData>;
  /** checkpoints and re-queues running jobs, then closes (idempotent) */
  stop: () => Promise<void>;
}

/** Starts a worker with the configuration in `env`. */
export async function startWorker(
  env: NodeJS.ProcessEnv = process.env,
  log: (line: string) => void = (l) => console.error(l),
): Promise<RunningWorker> {
  const config = loadConfig(env);
  const id = `${config.hostName}:${process.pid}`;
  process.env.EDGETUNE_WORKER_ID = id; // inherited by the sandboxed children
  // workspaces of job processes that were killed (their owner no longer runs)
  for (const dir of await sweepScratchDirs(config.workDir, null)) log(`[worker ${id}] removed stale workspace ${dir}`);
  // Both stores first (a line per attempt, with backoff); later outages: a line when a store goes, one when it is back.
  const storeLog = (l: string) => log(`[worker ${id}] ${l}`);
  await waitForDatabase(config.databaseUrl, storeLog);
  await waitForRedis(config.redisUrl, storeLog);
  const db = createPrisma(config.databaseUrl, { max: 3, watch: new StoreWatch('PostgreSQL', storeAddress(config.databaseUrl), storeLog) });
  const models = await scanModels(config.modelsDir, log);
  await registerModels(db, models, `worker@${config.hostName}`, (m) => log(`[worker ${id}] ${m}`));
  log(`[worker ${id}] base models in ${config.modelsDir}: ${models.map((m) => m.id).join(', ') || '(none)'}`);
  // the sandboxed processors start from these file hashes: they only rehash model files that changed since
  process.env.EDGETUNE_FINGERPRINT_CACHE = JSON.stringify(fingerprintCacheSnapshot());

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
  watchRedis(pub, new StoreWatch('Redis', storeAddress(config.redisUrl), storeLog));
  worker.on('active', (job) => {
    active.set(job.data.jobId, job.id!);
  });
  worker.on('completed', (job) => {
    active.delete(job.data.jobId);
  });
  worker.on('error', (err) => {
    if (!isStoreUnavailable(err)) log(`[worker ${id}] ${err.message}`); // outages: logged by the store watches
  });
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: pub, prefix: config.queuePrefix });
  queue.on('error', () => {}); // connection errors of `pub`: logged by its watch
  const deps: ReconcileDeps = { db, queue, redis: pub, prefix: config.queuePrefix };
  worker.on('failed', (job, err) => {
    if (!job) return;
    active.delete(job.data.jobId);
    // The processor records job failures itself; this covers what it could not (its process died, too many
    // stalls): a died process goes back to the queue from its checkpoint (reconcile.ts).
    // If this write is lost too, the next reconciliation pass settles the job from the failed queue job.
    settleFailedQueueJob(deps, job.data.jobId, job.id!, err.message, id).catch((e) =>
      log(`[worker ${id}] failed to record failure: ${(e as Error).message}`),
    );
  });
  // One pass at a time; a pass that fails (database or Redis down) is retried by the next one.
  let pass: Promise<void> | null = null;
  const reconcile = () =>
    (pass ??= reconcileJobs(deps)
      .then((done) => {
        for (const r of done) log(`[worker ${id}] reconciled ${r.jobId}: ${r.from} -> ${r.to} (queue job ${r.queueState})`);
      })
      .catch((e) => {
        if (!isStoreUnavailable(e)) log(`[worker ${id}] reconciliation failed: ${(e as Error).message}`); // outages: the watches
      })
      .finally(() => {
        pass = null;
      }));

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
  // inference on the tuned models of these base models (docs/serving.md)
  const serving = await startServing(
    config,
    models.map((m) => m.id),
    log,
  );
  await reconcile();
  const timer = config.reconcileIntervalMs > 0 ? setInterval(reconcile, config.reconcileIntervalMs) : null;

  // The device report: measured once (a child process, ~1.5 s, not awaited), then a heartbeat every
  // EDGETUNE_WORKER_HEARTBEAT_MS. Free memory is read only while idle: a running job's own use is not
  // what the next job will find.
  let probed: ProbedDevice | null = null;
  let device: WorkerDevice | null = null;
  let beating: Promise<void> | null = null;
  let removed = false;
  const heartbeat = () =>
    (beating ??= (async () => {
      if (!probed || removed) return;
      if (!device || active.size === 0) device = workerDevice(config, probed);
      await heartbeatWorker(db, { id, host: config.hostName, pid: process.pid, concurrency: config.workerConcurrency, device });
    })()
      .catch((e) => {
        if (!isStoreUnavailable(e)) log(`[worker ${id}] heartbeat failed: ${(e as Error).message}`); // outages: the watches
      })
      .finally(() => {
        beating = null;
      }));
  const readings = (p: { matmulGflops: number; stepTimeFactor: number }) =>
    `SGEMM ${p.matmulGflops.toFixed(0)} GFLOP/s, step-time factor ${p.stepTimeFactor.toFixed(2)}`;
  const probing = probeDevice()
    .then((p) => {
      probed = p;
      const ceiling =
        p.tensorHeapCeilingBytes === undefined ? '' : `, TF.js heap ceiling ${Math.floor(p.tensorHeapCeilingBytes / 2 ** 20)} MiB`;
      log(`[worker ${id}] device: ${p.backend}, ${p.matmul}, ${readings(p)}${ceiling}`);
      return heartbeat();
    })
    .catch((e) => log(`[worker ${id}] device probe failed, not reported (the API plans with its defaults): ${(e as Error).message}`));
  const beat = setInterval(heartbeat, config.workerHeartbeatMs);
  // Re-measured every EDGETUNE_WORKER_REPROBE_MS while idle: a VM's throughput drifts over hours, and jobs
  // planned with a stale reading run slower than forecast; a reading taken while a job runs would measure
  // the job's load instead, so it is dropped.
  let reprobing: Promise<void> | null = null;
  const reprobe =
    config.workerReprobeMs > 0
      ? setInterval(() => {
          if (!probed || removed || reprobing || active.size > 0) return;
          reprobing = probeDevice()
            .then((p) => {
              if (active.size > 0 || removed) return;
              probed = p;
              log(`[worker ${id}] device re-measured: ${readings(p)}`);
              return heartbeat();
            })
            .catch((e) => log(`[worker ${id}] device re-measure failed, the last report stands: ${(e as Error).message}`))
            .finally(() => {
              reprobing = null;
            });
        }, config.workerReprobeMs)
      : null;

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log(`[worker ${id}] stopping: running jobs checkpoint their current step and go back to the queue`);
      if (timer) clearInterval(timer);
      clearInterval(beat);
      if (reprobe) clearInterval(reprobe);
      await probing;
      await reprobing;
      await beating;
      removed = true;
      await removeWorker(db, id).catch((e) => log(`[worker ${id}] could not remove its device report: ${(e as Error).message}`));
      await pass;
      worker.cancelAllJobs('shutdown');
      await worker.close();
      await Promise.all(serving.map((w) => w.close()));
      await queue.close();
      sub.disconnect();
      pub.disconnect();
      await db.$disconnect();
    })());
  return { id, worker, stop };
}
