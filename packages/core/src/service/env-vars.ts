/**
 * Every environment variable edgetune reads, in one list: `loadConfig` parses the service's from it and
 * docs/configuration.md is generated from it (`npm run docs:config`). The engine, the lab, the worker's job
 * processes and docker-compose.yml read theirs themselves; their entries document them.
 */

/** Who reads a variable: the API, the worker, both, the engine (its CLIs and the workers' job processes), the lab CLI, or docker-compose.yml. */
export type EnvReader = 'api' | 'worker' | 'both' | 'engine' | 'lab' | 'cli' | 'compose';

/**
 * How `loadConfig` checks a value (JSON Schema, the string coerced first; an empty string counts as unset).
 * `integer` with `minimum` 0 or 1: a non-negative / positive integer; `number`: a number above 0.
 */
export type EnvCheck = { type: 'string' } | { type: 'integer'; minimum: 0 | 1 } | { type: 'number'; exclusiveMinimum: 0 };

/** One environment variable. */
export interface EnvVar {
  name: string;
  readBy: EnvReader;
  /** what it does, Markdown, one line */
  meaning: string;
  /** how loadConfig checks it; absent: its reader reads `process.env` itself and this entry only documents it */
  check?: EnvCheck;
  /** the value loadConfig uses when it is unset (absent: none, or derived: see `defaultText`) */
  default?: string | number;
  /** the default as documented, Markdown, when it is not `default` as is (derived, or decided by its reader) */
  defaultText?: string;
}

const str = { type: 'string' } as const;
const count = { type: 'integer', minimum: 0 } as const;
const positiveInt = { type: 'integer', minimum: 1 } as const;

/** The service's variables: loadConfig parses every one of these. */
const SERVICE_VARS: EnvVar[] = [
  {
    name: 'DATABASE_URL',
    readBy: 'both',
    check: str,
    default: 'postgresql://postgres@127.0.0.1:5432/edgetune',
    meaning:
      'PostgreSQL: system of record and blob store (datasets, checkpoints, adapters; chunked `bytea`, so ranges read only what they touch)',
  },
  {
    name: 'REDIS_URL',
    readBy: 'both',
    check: str,
    default: 'redis://127.0.0.1:6379',
    meaning: 'Redis: BullMQ queue, event and cancel notifications',
  },
  { name: 'PORT', readBy: 'api', check: count, default: 8080, meaning: 'port the API listens on (`0`: a free port)' },
  { name: 'HOST', readBy: 'api', check: str, default: '0.0.0.0', meaning: 'address the API listens on' },
  { name: 'LOG_LEVEL', readBy: 'api', check: str, default: 'info', meaning: 'API log level (pino)' },
  {
    name: 'EDGETUNE_MODELS_DIR',
    readBy: 'both',
    check: str,
    default: 'models',
    defaultText: '`models` (in the working directory)',
    meaning:
      "every subfolder with a `config.json` is a base model (id = folder name); API and workers report theirs to `GET /v1/models`; its `config.json` and weight files are fingerprinted (sha256) and compression policies are kept per fingerprint, so replacing a folder's weights never reuses the old weights' policies",
  },
  {
    name: 'EDGETUNE_BOOTSTRAP_API_KEY',
    readBy: 'api',
    check: str,
    meaning: 'when set and no key exists yet, project `default` is created with this admin key',
  },
  {
    name: 'EDGETUNE_METRICS_TOKEN',
    readBy: 'api',
    check: str,
    defaultText: 'none: `GET /metrics` needs no credentials',
    meaning:
      'when set, `GET /metrics` (Prometheus) answers only requests with `Authorization: Bearer <this token>` (401 otherwise); API keys do not open it',
  },
  {
    name: 'EDGETUNE_QUEUE_PREFIX',
    readBy: 'both',
    check: str,
    default: 'edgetune',
    meaning: 'BullMQ key prefix and Redis pub/sub channel prefix',
  },
  {
    name: 'EDGETUNE_HOST_NAME',
    readBy: 'both',
    check: str,
    defaultText: 'the hostname',
    meaning: "name in a model's `hosts` and in a job's worker id",
  },
  {
    name: 'EDGETUNE_MAX_FILE_BYTES',
    readBy: 'api',
    check: count,
    default: 536_870_912,
    meaning: 'upload limit per file, bytes (413 above it)',
  },
  {
    name: 'EDGETUNE_RATE_LIMIT_WINDOW_MS',
    readBy: 'api',
    check: positiveInt,
    default: 60_000,
    meaning: 'window of the `/v1` rate limits below, ms: each counter starts with its first request and resets after this long',
  },
  {
    name: 'EDGETUNE_RATE_LIMIT_PER_KEY',
    readBy: 'api',
    check: count,
    default: 3000,
    meaning: 'requests one API key may make to `/v1` per window (429 `rate_limited` with `Retry-After` above it; `0`: no limit)',
  },
  {
    name: 'EDGETUNE_RATE_LIMIT_PER_ADDRESS',
    readBy: 'api',
    check: count,
    default: 6000,
    meaning: 'requests one client address may make to `/v1` per window, whatever key it sends (`0`: no limit)',
  },
  {
    name: 'EDGETUNE_AUTH_FAILURE_LIMIT',
    readBy: 'api',
    check: count,
    default: 30,
    meaning:
      'failed authentications (401) one client address may have per window; past it every `/v1` request from that address answers 429 `rate_limited` until the window ends (`0`: no limit)',
  },
  {
    name: 'EDGETUNE_MAX_JOB_SECONDS',
    readBy: 'api',
    check: count,
    default: 86_400,
    meaning:
      "longest training time a job may be forecast to take, seconds (its plan's `forecast.total_ms`, which a `hyperparameters.time_budget_s` bounds): a longer job is refused with 422 `job_exceeds_limits` before it is queued; `0`: no limit",
  },
  {
    name: 'EDGETUNE_MAX_CHECKPOINT_BYTES',
    readBy: 'api',
    check: count,
    default: 2_147_483_648,
    meaning:
      'most checkpoint storage one job may be forecast to hold at once, bytes (one checkpoint: its trainable weights and AdamW moments, times the checkpoints kept): a job above it is refused with 422 `job_exceeds_limits` before it is queued; `0`: no limit',
  },
  {
    name: 'EDGETUNE_CHECKPOINTS_KEPT',
    readBy: 'both',
    check: positiveInt,
    default: 2,
    meaning:
      'checkpoints a job keeps while it runs: the latest this many, plus the best on validation when the job validates in the loop; the rest are deleted (blobs freed) as new ones are stored. When the job ends they are all deleted unless it asked `checkpointing.keep_after_finish`',
  },
  {
    name: 'EDGETUNE_IDEMPOTENCY_TIMEOUT_MS',
    readBy: 'api',
    check: positiveInt,
    default: 60_000,
    meaning:
      'an `Idempotency-Key` whose request stopped renewing its claim (its API process died) is taken over by a retry after this long, ms',
  },
  {
    name: 'EDGETUNE_IDEMPOTENCY_RETENTION_MS',
    readBy: 'api',
    check: positiveInt,
    default: 86_400_000,
    meaning:
      "an `Idempotency-Key`'s stored answer is kept this long, ms (24 h, as Stripe does); after it the key is new: a request under it runs again and jobs and files no longer record it. The API deletes expired answers at startup and every min(retention / 4, 1 h)",
  },
  {
    name: 'EDGETUNE_WEBHOOK_MAX_ATTEMPTS',
    readBy: 'api',
    check: positiveInt,
    default: 10,
    meaning: 'attempts at delivering one webhook event (the first included) before it is marked `failed`',
  },
  {
    name: 'EDGETUNE_WEBHOOK_BACKOFF_MS',
    readBy: 'api',
    check: positiveInt,
    default: 30_000,
    meaning:
      'delay before the first retry of a webhook delivery, ms; it doubles with each further attempt (30 s, 1 min, 2 min, ... ~4 h in all by default)',
  },
  {
    name: 'EDGETUNE_WEBHOOK_TIMEOUT_MS',
    readBy: 'api',
    check: positiveInt,
    default: 10_000,
    meaning: 'how long one webhook request may take before it counts as failed (and is retried), ms',
  },
  {
    name: 'EDGETUNE_WORKER_CONCURRENCY',
    readBy: 'worker',
    check: positiveInt,
    default: 1,
    meaning: 'jobs one worker runs at once (one sandboxed process each)',
  },
  {
    name: 'EDGETUNE_LOCK_DURATION_MS',
    readBy: 'worker',
    check: count,
    default: 30_000,
    meaning: "BullMQ lock duration, ms: with the stalled-check interval, how soon a dead worker's job is picked up again",
  },
  {
    name: 'EDGETUNE_STALLED_INTERVAL_MS',
    readBy: 'worker',
    check: count,
    default: 30_000,
    meaning: "BullMQ stalled-check interval, ms: with the lock duration, how soon a dead worker's job is picked up again",
  },
  {
    name: 'EDGETUNE_MAX_STALLED_COUNT',
    readBy: 'worker',
    check: count,
    default: 3,
    meaning: 'worker deaths a job survives before it fails with `worker_lost`',
  },
  {
    name: 'EDGETUNE_RECONCILE_INTERVAL_MS',
    readBy: 'worker',
    check: count,
    default: 60_000,
    meaning: 'how often a worker settles jobs BullMQ no longer delivers, ms (also at its startup; `0`: only then)',
  },
  {
    name: 'EDGETUNE_WORKER_HEARTBEAT_MS',
    readBy: 'both',
    check: positiveInt,
    default: 15_000,
    meaning:
      'how often a worker refreshes its device report (`GET /v1/workers`), ms; the API plans only for workers heard from within 3 heartbeats',
  },
  {
    name: 'EDGETUNE_WORKER_REPROBE_MS',
    readBy: 'worker',
    check: count,
    default: 600_000,
    meaning:
      "how often an idle worker re-measures its SGEMM throughput for its device report (a VM's speed drifts), ms; `0`: only at startup",
  },
  {
    name: 'EDGETUNE_WORK_DIR',
    readBy: 'worker',
    check: str,
    defaultText: '`$TMPDIR/edgetune-work`',
    meaning: 'worker scratch space (inputs, engine output)',
  },
  {
    name: 'EDGETUNE_DEVICE_MEMORY_BYTES',
    readBy: 'both',
    check: positiveInt,
    meaning:
      "memory budget of a job that states no `device.memory_budget_bytes`, bytes: a worker runs with it and reports it (unset: its free memory when idle); the API plans with it only when no worker is live (unset: the API host's free memory)",
  },
  {
    name: 'EDGETUNE_DEVICE_THREADS',
    readBy: 'both',
    check: positiveInt,
    meaning:
      "BLAS threads of a job that states no `device.threads` (unset: a worker uses the engine default; the API, with no worker live, its host's cores)",
  },
  {
    name: 'EDGETUNE_DEVICE_GFLOPS',
    readBy: 'both',
    check: { type: 'number', exclusiveMinimum: 0 },
    meaning:
      'SGEMM throughput for time forecasts, GFLOP/s: a worker uses and reports it instead of its own measurement (`edgetune-engine device`, at startup); the API assumes it when no worker is live (unset: 20 GFLOP/s, a 2-core x86 box with OpenBLAS)',
  },
  {
    name: 'EDGETUNE_ADVISOR_RULES',
    readBy: 'api',
    check: str,
    defaultText: '`packages/core/src/advisor/rules.json` (written by `npm run bench -- --guidelines`)',
    meaning:
      "the advisor's fitted rules (`POST /v1/recommendations`); without a rules file the advisor answers 503 `advisor_rules_missing`",
  },
];

/** Read where they are used (the engine when a backend starts, the worker's job processes, the lab, compose). */
const OTHER_VARS: EnvVar[] = [
  {
    name: 'EDGETUNE_BACKEND',
    readBy: 'engine',
    defaultText: '`auto`',
    meaning: '`auto`: tfjs-node-gpu, else tfjs-node, else wasm; `wasm`, `cpu` or `tensorflow` forces that backend',
  },
  {
    name: 'EDGETUNE_NATIVE',
    readBy: 'engine',
    defaultText: 'on',
    meaning:
      '`0` disables the native addon (OpenBLAS matmul and fused kernels): the engine then uses its wasm and JS kernels; at install, `0` builds nothing',
  },
  {
    name: 'EDGETUNE_NATIVE_ADDON',
    readBy: 'engine',
    defaultText: 'unset',
    meaning: 'path of a `blas_addon.node` tried before `packages/engine/native/build/blas_addon.node`',
  },
  {
    name: 'EDGETUNE_BLAS_THREADS',
    readBy: 'engine',
    defaultText: "`OPENBLAS_NUM_THREADS`, else the machine's cores",
    meaning: "threads of the OpenBLAS addon (a job's `device.threads` or `EDGETUNE_DEVICE_THREADS` wins in a worker)",
  },
  {
    name: 'OPENBLAS_NUM_THREADS',
    readBy: 'engine',
    defaultText: 'unset',
    meaning: 'OpenBLAS threads when `EDGETUNE_BLAS_THREADS` is unset',
  },
  {
    name: 'EDGETUNE_FUSED_THREADS',
    readBy: 'engine',
    defaultText: 'the BLAS threads, at most 4',
    meaning: 'threads of the fused native training kernels, 1 to 64 (`1`: on the calling thread)',
  },
  {
    name: 'EDGETUNE_EAGER_BACKPROP',
    readBy: 'engine',
    defaultText: 'on',
    meaning: "`0` restores TF.js's stock backward pass (keeps every gradient and saved activation to the end of the pass)",
  },
  {
    name: 'EDGETUNE_V8_OPTIMIZE_FOR_SIZE',
    readBy: 'engine',
    defaultText: 'on',
    meaning:
      "the tuning commands of `edgetune-engine` and `edgetune-lab` set V8's `--optimize-for-size` (lower peak RSS); `0` keeps V8's defaults",
  },
  {
    name: 'EDGETUNE_CACHE_DIR',
    readBy: 'engine',
    defaultText: 'the temp folder',
    meaning: 'where `edgetune-sgemm-peak.json` (the recent SGEMM readings the planner uses) is kept',
  },
  {
    name: 'EDGETUNE_API_URL',
    readBy: 'cli',
    defaultText: 'unset',
    meaning: 'the API the `edgetune` command talks to (e.g. `http://localhost:8080`); `--api-url` overrides it',
  },
  {
    name: 'EDGETUNE_API_KEY',
    readBy: 'cli',
    defaultText: 'unset',
    meaning: 'the API key the `edgetune` command sends; `--api-key` overrides it',
  },
  {
    name: 'EDGETUNE_DEBUG',
    readBy: 'engine',
    defaultText: 'unset',
    meaning: "when set, a CLI's error also prints its stack and the backend line says why tfjs-node could not be used",
  },
  {
    name: 'EDGETUNE_QUIET',
    readBy: 'worker',
    defaultText: 'unset',
    meaning: "`1`: a worker's job processes do not log the engine's backend line",
  },
  {
    name: 'EDGETUNE_WORKER_ID',
    readBy: 'worker',
    defaultText: 'set by the worker',
    meaning: "the worker's id (`host:pid`), which it passes to its job processes; not set by hand",
  },
  {
    name: 'EDGETUNE_FINGERPRINT_CACHE',
    readBy: 'worker',
    defaultText: 'set by the worker',
    meaning:
      'the model file hashes a worker made at startup (JSON), passed to its job processes so that they rehash only changed files; not set by hand',
  },
  {
    name: 'EDGETUNE_BENCH_MODEL',
    readBy: 'lab',
    defaultText: '`models/edgetune-tiny-llama`',
    meaning: 'base model folder of `edgetune-lab bench` (its `--model` wins)',
  },
  {
    name: 'EDGETUNE_BIND',
    readBy: 'compose',
    defaultText: '`127.0.0.1`',
    meaning: "interface the API container's port is published on (`0.0.0.0` serves the LAN)",
  },
  {
    name: 'POSTGRES_PASSWORD',
    readBy: 'compose',
    defaultText: '`edgetune`',
    meaning: "password of the PostgreSQL container, also put into the services' `DATABASE_URL`",
  },
];

/** Every environment variable edgetune reads: the service's (parsed by loadConfig) first, then the others. */
export const ENV_VARS: readonly EnvVar[] = [...SERVICE_VARS, ...OTHER_VARS];
