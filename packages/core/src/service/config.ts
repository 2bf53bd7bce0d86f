/** Service configuration, read from the environment with the schema of env-vars.ts (documented in docs/configuration.md). */
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import envSchema from 'env-schema';
import { ENV_VARS, type EnvCheck } from './env-vars.js';

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
  /** bearer token `GET /metrics` requires (EDGETUNE_METRICS_TOKEN); absent: the endpoint is open */
  metricsToken?: string;
  /** BullMQ key prefix (and Redis pub/sub channel prefix) */
  queuePrefix: string;
  /** upload limit for one file, bytes */
  maxFileBytes: number;
  /**
   * `/v1` rate limits (in-process counters, per window of `rateLimitWindowMs`): requests per API key, requests per
   * client address, failed authentications per client address; 0 turns one off
   */
  rateLimitWindowMs: number;
  rateLimitPerKey: number;
  rateLimitPerAddress: number;
  authFailureLimit: number;
  /** longest forecast training time of a job, seconds (0: no limit) */
  maxJobSeconds: number;
  /** most forecast checkpoint storage of one job, bytes (0: no limit) */
  maxCheckpointBytes: number;
  /** checkpoints a running job keeps (the latest ones; the best on validation besides) */
  checkpointsKept: number;
  /** how long an Idempotency-Key's request may go without renewing its claim before a retry takes the key over, ms */
  idempotencyTimeoutMs: number;
  /** how long an Idempotency-Key's stored answer is kept (from its request's last claim), ms: after it the key is new */
  idempotencyRetentionMs: number;
  /** webhook deliveries: attempts in all, delay before the first retry (doubling after), timeout of one request, ms */
  webhookMaxAttempts: number;
  webhookBackoffMs: number;
  webhookTimeoutMs: number;
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
  /** the advisor's fitted rules file (EDGETUNE_ADVISOR_RULES); absent: ADVISOR_RULES_FILE */
  advisorRulesPath?: string;
}

/** Matmul throughput (GFLOP/s) the API assumes for workers when EDGETUNE_DEVICE_GFLOPS is unset: a 2-core x86 box with OpenBLAS. */
export const DEFAULT_DEVICE_GFLOPS = 20;

/**
 * A malformed environment variable. `message` is one line, `NAME must be <what>, got "<value>"`, one clause per
 * bad variable (joined by `; `); `variable` names the first.
 */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

const PARSED = ENV_VARS.filter((v) => v.check);
const CHECKS = new Map(PARSED.map((v) => [v.name, v.check as EnvCheck]));

/** JSON Schema of the variables loadConfig parses (env-schema coerces the strings and fills in the defaults). */
const SCHEMA = {
  type: 'object',
  properties: Object.fromEntries(PARSED.map((v) => [v.name, { ...v.check, ...(v.default === undefined ? {} : { default: v.default }) }])),
};

/** What a check asks for, as the error message says it. */
function expected(check: EnvCheck | undefined): string {
  if (check?.type === 'number') return 'a positive number';
  if (check?.type === 'integer') return check.minimum === 1 ? 'a positive integer' : 'a non-negative integer';
  return 'a string';
}

type Parsed = Record<string, string | number | undefined>;

/** Validates the parsed variables of `env` (unset and empty ones dropped: they take their defaults). @throws ConfigError */
function parse(env: NodeJS.ProcessEnv): Parsed {
  const data = Object.fromEntries(PARSED.filter((v) => env[v.name]).map((v) => [v.name, env[v.name]]));
  try {
    return envSchema<Parsed>({ schema: SCHEMA, data, env: false });
  } catch (e) {
    const errors = (e as { errors?: { instancePath: string }[] }).errors;
    if (!errors?.length) throw e;
    // Ajv's instancePath is `/NAME`; one clause per variable, however many rules it broke
    const names = [...new Set(errors.map((x) => x.instancePath.slice(1)))];
    const clauses = names.map((n) => `${n} must be ${expected(CHECKS.get(n))}, got ${JSON.stringify(env[n])}`);
    throw new ConfigError(names[0], clauses.join('; '));
  }
}

/**
 * Reads the configuration from `env` (defaults: local PostgreSQL and Redis, port 8080, `models/`; every variable
 * with its default in ENV_VARS and docs/configuration.md). Unset and empty variables take their defaults.
 * @throws ConfigError when a variable is malformed (e.g. `EDGETUNE_WORKER_CONCURRENCY=x`)
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const p = parse(env);
  const text = (name: string) => p[name] as string | undefined;
  const num = (name: string) => p[name] as number;
  const opt = (name: string) => (p[name] as number | undefined) ?? null;
  return {
    databaseUrl: text('DATABASE_URL') as string,
    redisUrl: text('REDIS_URL') as string,
    port: num('PORT'),
    host: text('HOST') as string,
    modelsDir: resolve(text('EDGETUNE_MODELS_DIR') as string),
    bootstrapApiKey: text('EDGETUNE_BOOTSTRAP_API_KEY') ?? null,
    queuePrefix: text('EDGETUNE_QUEUE_PREFIX') as string,
    maxFileBytes: num('EDGETUNE_MAX_FILE_BYTES'),
    rateLimitWindowMs: num('EDGETUNE_RATE_LIMIT_WINDOW_MS'),
    rateLimitPerKey: num('EDGETUNE_RATE_LIMIT_PER_KEY'),
    rateLimitPerAddress: num('EDGETUNE_RATE_LIMIT_PER_ADDRESS'),
    authFailureLimit: num('EDGETUNE_AUTH_FAILURE_LIMIT'),
    maxJobSeconds: num('EDGETUNE_MAX_JOB_SECONDS'),
    maxCheckpointBytes: num('EDGETUNE_MAX_CHECKPOINT_BYTES'),
    checkpointsKept: num('EDGETUNE_CHECKPOINTS_KEPT'),
    idempotencyTimeoutMs: num('EDGETUNE_IDEMPOTENCY_TIMEOUT_MS'),
    idempotencyRetentionMs: num('EDGETUNE_IDEMPOTENCY_RETENTION_MS'),
    webhookMaxAttempts: num('EDGETUNE_WEBHOOK_MAX_ATTEMPTS'),
    webhookBackoffMs: num('EDGETUNE_WEBHOOK_BACKOFF_MS'),
    webhookTimeoutMs: num('EDGETUNE_WEBHOOK_TIMEOUT_MS'),
    lockDurationMs: num('EDGETUNE_LOCK_DURATION_MS'),
    stalledIntervalMs: num('EDGETUNE_STALLED_INTERVAL_MS'),
    maxStalledCount: num('EDGETUNE_MAX_STALLED_COUNT'),
    reconcileIntervalMs: num('EDGETUNE_RECONCILE_INTERVAL_MS'),
    workerHeartbeatMs: num('EDGETUNE_WORKER_HEARTBEAT_MS'),
    workerReprobeMs: num('EDGETUNE_WORKER_REPROBE_MS'),
    workerConcurrency: num('EDGETUNE_WORKER_CONCURRENCY'),
    workDir: resolve(text('EDGETUNE_WORK_DIR') ?? join(tmpdir(), 'edgetune-work')),
    hostName: text('EDGETUNE_HOST_NAME') ?? hostname(),
    logLevel: text('LOG_LEVEL') as string,
    deviceMemoryBytes: opt('EDGETUNE_DEVICE_MEMORY_BYTES'),
    deviceThreads: opt('EDGETUNE_DEVICE_THREADS'),
    deviceGflops: opt('EDGETUNE_DEVICE_GFLOPS'),
    ...(text('EDGETUNE_METRICS_TOKEN') ? { metricsToken: text('EDGETUNE_METRICS_TOKEN') as string } : {}),
    ...(text('EDGETUNE_ADVISOR_RULES') ? { advisorRulesPath: resolve(text('EDGETUNE_ADVISOR_RULES') as string) } : {}),
  };
}
