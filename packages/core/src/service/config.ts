/** Service configuration, read from the environment (documented in the README). */
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Everything the API and the worker read from the environment. */
export interface Config {
  databaseUrl: string;
  redisUrl: string;
  port: number;
  host: string;
  /** folder whose subfolders with a config.json are base models */
  modelsDir: string;
  /** when set and no key exists yet, project `default` is created with this admin key */
  bootstrapApiKey: string | null;
  /** BullMQ key prefix (and Redis pub/sub channel prefix) */
  queuePrefix: string;
  /** upload limit for one file, bytes */
  maxFileBytes: number;
  /** how long an Idempotency-Key's request may go without renewing its claim before a retry takes the key over, ms */
  idempotencyTimeoutMs: number;
  /** how long an Idempotency-Key's stored answer is kept (from its request's last claim), ms: after it the key is new */
  idempotencyRetentionMs: number;
  /** BullMQ lock duration / stalled check interval, ms; max stalls before a job fails */
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  /** how often a worker reconciles unfinished jobs with BullMQ, ms (0: only at its startup) */
  reconcileIntervalMs: number;
  /** how often a worker refreshes its row in `workers` (device profile, liveness), ms; the API counts a worker live for 3 heartbeats */
  workerHeartbeatMs: number;
  /** how often an idle worker re-measures its device (SGEMM throughput drifts on shared machines), ms (0: only at its startup) */
  workerReprobeMs: number;
  /** jobs one worker process runs at once */
  workerConcurrency: number;
  /** local scratch folder of the worker */
  workDir: string;
  /** name this host reports (base model registry, job worker_id) */
  hostName: string;
  logLevel: string;
  /**
   * The device a job runs on when it states none (EDGETUNE_DEVICE_MEMORY_BYTES, EDGETUNE_DEVICE_THREADS,
   * EDGETUNE_DEVICE_GFLOPS): null = unknown. A worker uses them over its own free memory, cores and measured
   * SGEMM, and reports the result in `workers`; the API plans with a live worker's report, else these, else
   * its own host's free memory and cores and DEFAULT_DEVICE_GFLOPS.
   */
  deviceMemoryBytes: number | null;
  deviceThreads: number | null;
  deviceGflops: number | null;
}

/** Matmul throughput (GFLOP/s) the API assumes for workers when EDGETUNE_DEVICE_GFLOPS is unset: a 2-core x86 box with OpenBLAS. */
export const DEFAULT_DEVICE_GFLOPS = 20;

function int(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(v)}`);
  return Math.floor(n);
}

function positive(env: NodeJS.ProcessEnv, name: string, integer = false): number | null {
  const v = env[name];
  if (v === undefined || v === '') return null;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && n < 1)) throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`);
  return integer ? Math.floor(n) : n;
}

/** Reads the configuration from `env` (defaults: local PostgreSQL and Redis, port 8080, `models/`). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    databaseUrl: env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/edgetune',
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    port: int(env, 'PORT', 8080),
    host: env.HOST || '0.0.0.0',
    modelsDir: resolve(env.EDGETUNE_MODELS_DIR || 'models'),
    bootstrapApiKey: env.EDGETUNE_BOOTSTRAP_API_KEY || null,
    queuePrefix: env.EDGETUNE_QUEUE_PREFIX || 'edgetune',
    maxFileBytes: int(env, 'EDGETUNE_MAX_FILE_BYTES', 512 * 1024 * 1024),
    idempotencyTimeoutMs: positive(env, 'EDGETUNE_IDEMPOTENCY_TIMEOUT_MS', true) ?? 60_000,
    idempotencyRetentionMs: positive(env, 'EDGETUNE_IDEMPOTENCY_RETENTION_MS', true) ?? 24 * 3_600_000,
    lockDurationMs: int(env, 'EDGETUNE_LOCK_DURATION_MS', 30_000),
    stalledIntervalMs: int(env, 'EDGETUNE_STALLED_INTERVAL_MS', 30_000),
    maxStalledCount: int(env, 'EDGETUNE_MAX_STALLED_COUNT', 3),
    reconcileIntervalMs: int(env, 'EDGETUNE_RECONCILE_INTERVAL_MS', 60_000),
    workerHeartbeatMs: positive(env, 'EDGETUNE_WORKER_HEARTBEAT_MS', true) ?? 15_000,
    workerReprobeMs: int(env, 'EDGETUNE_WORKER_REPROBE_MS', 600_000),
    workerConcurrency: Math.max(1, int(env, 'EDGETUNE_WORKER_CONCURRENCY', 1)),
    workDir: resolve(env.EDGETUNE_WORK_DIR || join(tmpdir(), 'edgetune-work')),
    hostName: env.EDGETUNE_HOST_NAME || hostname(),
    logLevel: env.LOG_LEVEL || 'info',
    deviceMemoryBytes: positive(env, 'EDGETUNE_DEVICE_MEMORY_BYTES', true),
    deviceThreads: positive(env, 'EDGETUNE_DEVICE_THREADS', true),
    deviceGflops: positive(env, 'EDGETUNE_DEVICE_GFLOPS'),
  };
}
