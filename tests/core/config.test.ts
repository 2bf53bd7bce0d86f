// The environment schema (packages/core/src/service/env-vars.ts): loadConfig parses the service's variables from
// it, docs/configuration.md is generated from it, and every variable the sources read is in it.
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../../packages/core/src/service/config.js';
import { ENV_VARS } from '../../packages/core/src/service/env-vars.js';
import { configurationMarkdown } from '../../packages/core/src/service/env-doc.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

const DEFAULTS: Config = {
  databaseUrl: 'postgresql://postgres@127.0.0.1:5432/edgetune',
  redisUrl: 'redis://127.0.0.1:6379',
  port: 8080,
  host: '0.0.0.0',
  modelsDir: resolve('models'),
  bootstrapApiKey: null,
  queuePrefix: 'edgetune',
  maxFileBytes: 512 * 1024 * 1024,
  maxJobSeconds: 86_400,
  maxCheckpointBytes: 2 * 1024 ** 3,
  checkpointsKept: 2,
  rateLimitWindowMs: 60_000,
  rateLimitPerKey: 3000,
  rateLimitPerAddress: 6000,
  authFailureLimit: 30,
  idempotencyTimeoutMs: 60_000,
  idempotencyRetentionMs: 24 * 3_600_000,
  webhookMaxAttempts: 10,
  webhookBackoffMs: 30_000,
  webhookTimeoutMs: 10_000,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 3,
  reconcileIntervalMs: 60_000,
  workerHeartbeatMs: 15_000,
  workerReprobeMs: 600_000,
  workerConcurrency: 1,
  workDir: join(tmpdir(), 'edgetune-work'),
  hostName: hostname(),
  logLevel: 'info',
  deviceMemoryBytes: null,
  deviceThreads: null,
  deviceGflops: null,
};

/** Source files (.ts, .mts, .js, .mjs) under `dir`, without node_modules, dist and generated code. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(m?ts|m?js)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .filter((f) => !/[\\/](node_modules|dist|generated)[\\/]/.test(f.slice(ROOT.length)));
}

/** Every `env.NAME` / `process.env.NAME` / `env['NAME']` the API, worker, engine, lab, store and core read, with where. */
function readsInSources(): Map<string, string> {
  const packages = readdirSync(join(ROOT, 'packages')).map((p) => join(ROOT, 'packages', p, 'src'));
  const files = [join(ROOT, 'apps'), ...packages].flatMap(sources);
  const reads = new Map<string, string>();
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/\benv(?:\.([A-Z][A-Z0-9_]*)|\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\])/g)) {
      reads.set(m[1] ?? m[2], f.slice(ROOT.length + 1));
    }
  }
  return reads;
}

describe('docs/configuration.md', () => {
  it('is what `npm run docs:config` generates from the schema (regenerate after changing env-vars.ts)', () => {
    expect(read('docs/configuration.md')).toBe(configurationMarkdown());
  });

  it('has one table row per variable, each named once', () => {
    const rows = [...read('docs/configuration.md').matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(rows).toEqual(ENV_VARS.map((v) => v.name));
    expect(new Set(rows).size).toBe(rows.length);
  });
});

describe('loadConfig', () => {
  it('gives the documented defaults for an empty environment, and for empty values', () => {
    expect(loadConfig({})).toEqual(DEFAULTS);
    expect(loadConfig(Object.fromEntries(ENV_VARS.map((v) => [v.name, ''])))).toEqual(DEFAULTS);
  });

  it('reads only the environment it is given', () => {
    expect(loadConfig({ PATH: '/bin', UNKNOWN_VARIABLE: 'x' })).toEqual(DEFAULTS);
  });

  it('parses every variable into its field', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgresql://u@db:5432/x',
      REDIS_URL: 'redis://r:6379',
      PORT: '0',
      HOST: '127.0.0.1',
      EDGETUNE_MODELS_DIR: '/srv/models',
      EDGETUNE_BOOTSTRAP_API_KEY: 'et-key',
      EDGETUNE_QUEUE_PREFIX: 'p',
      EDGETUNE_MAX_FILE_BYTES: '1024',
      EDGETUNE_RATE_LIMIT_WINDOW_MS: '1000',
      EDGETUNE_RATE_LIMIT_PER_KEY: '10',
      EDGETUNE_RATE_LIMIT_PER_ADDRESS: '0',
      EDGETUNE_AUTH_FAILURE_LIMIT: '3',
      EDGETUNE_MAX_JOB_SECONDS: '0',
      EDGETUNE_MAX_CHECKPOINT_BYTES: '1000000',
      EDGETUNE_CHECKPOINTS_KEPT: '5',
      EDGETUNE_IDEMPOTENCY_TIMEOUT_MS: '5000',
      EDGETUNE_IDEMPOTENCY_RETENTION_MS: '30000',
      EDGETUNE_WEBHOOK_MAX_ATTEMPTS: '3',
      EDGETUNE_WEBHOOK_BACKOFF_MS: '200',
      EDGETUNE_WEBHOOK_TIMEOUT_MS: '1500',
      EDGETUNE_LOCK_DURATION_MS: '2000',
      EDGETUNE_STALLED_INTERVAL_MS: '1000',
      EDGETUNE_MAX_STALLED_COUNT: '0',
      EDGETUNE_RECONCILE_INTERVAL_MS: '0',
      EDGETUNE_WORKER_HEARTBEAT_MS: '500',
      EDGETUNE_WORKER_REPROBE_MS: '0',
      EDGETUNE_WORKER_CONCURRENCY: '2',
      EDGETUNE_WORK_DIR: 'work',
      EDGETUNE_HOST_NAME: 'box-1',
      LOG_LEVEL: 'debug',
      EDGETUNE_DEVICE_MEMORY_BYTES: '2147483648',
      EDGETUNE_DEVICE_THREADS: '4',
      EDGETUNE_DEVICE_GFLOPS: '12.5',
    });
    expect(c).toEqual({
      databaseUrl: 'postgresql://u@db:5432/x',
      redisUrl: 'redis://r:6379',
      port: 0,
      host: '127.0.0.1',
      modelsDir: '/srv/models',
      bootstrapApiKey: 'et-key',
      queuePrefix: 'p',
      maxFileBytes: 1024,
      rateLimitWindowMs: 1000,
      rateLimitPerKey: 10,
      rateLimitPerAddress: 0,
      authFailureLimit: 3,
      maxJobSeconds: 0,
      maxCheckpointBytes: 1_000_000,
      checkpointsKept: 5,
      idempotencyTimeoutMs: 5000,
      idempotencyRetentionMs: 30_000,
      webhookMaxAttempts: 3,
      webhookBackoffMs: 200,
      webhookTimeoutMs: 1500,
      lockDurationMs: 2000,
      stalledIntervalMs: 1000,
      maxStalledCount: 0,
      reconcileIntervalMs: 0,
      workerHeartbeatMs: 500,
      workerReprobeMs: 0,
      workerConcurrency: 2,
      workDir: resolve('work'),
      hostName: 'box-1',
      logLevel: 'debug',
      deviceMemoryBytes: 2_147_483_648,
      deviceThreads: 4,
      deviceGflops: 12.5,
    } satisfies Config);
  });

  it('rejects a malformed value with a one-line ConfigError naming the variable', () => {
    const err = (env: NodeJS.ProcessEnv) => {
      try {
        loadConfig(env);
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    const e = err({ EDGETUNE_WORKER_CONCURRENCY: 'x' });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.name).toBe('ConfigError');
    expect(e.variable).toBe('EDGETUNE_WORKER_CONCURRENCY');
    expect(e.message).toBe('EDGETUNE_WORKER_CONCURRENCY must be a positive integer, got "x"');
    expect(err({ EDGETUNE_WORKER_CONCURRENCY: '0' }).message).toBe('EDGETUNE_WORKER_CONCURRENCY must be a positive integer, got "0"');
    expect(err({ PORT: '-1' }).message).toBe('PORT must be a non-negative integer, got "-1"');
    expect(err({ EDGETUNE_MAX_FILE_BYTES: '1.5' }).message).toBe('EDGETUNE_MAX_FILE_BYTES must be a non-negative integer, got "1.5"');
    expect(err({ EDGETUNE_DEVICE_GFLOPS: '0' }).message).toBe('EDGETUNE_DEVICE_GFLOPS must be a positive number, got "0"');
    const two = err({ EDGETUNE_IDEMPOTENCY_TIMEOUT_MS: 'soon', EDGETUNE_DEVICE_THREADS: '-2' });
    expect(two.variable).toBe('EDGETUNE_IDEMPOTENCY_TIMEOUT_MS');
    expect(two.message).toBe(
      'EDGETUNE_IDEMPOTENCY_TIMEOUT_MS must be a positive integer, got "soon"; EDGETUNE_DEVICE_THREADS must be a positive integer, got "-2"',
    );
    expect(two.message).not.toContain('\n');
  });
});

describe('the schema', () => {
  it('lists every variable the sources read (apps/, packages/*/src)', () => {
    const reads = readsInSources();
    // the scan is live: it finds the worker's and the engine's own reads
    expect([...reads.keys()]).toEqual(expect.arrayContaining(['EDGETUNE_WORKER_ID', 'EDGETUNE_BACKEND', 'EDGETUNE_V8_OPTIMIZE_FOR_SIZE']));
    const names = new Set(ENV_VARS.map((v) => v.name));
    for (const [name, file] of reads) expect(names.has(name), `${file} reads ${name}, which env-vars.ts does not list`).toBe(true);
  });

  it("lists no variable nothing reads: loadConfig parses the service's, the sources or docker-compose.yml read the others", () => {
    const reads = readsInSources();
    const compose = read('docker-compose.yml');
    for (const v of ENV_VARS) {
      if (v.check) continue; // parsed by loadConfig (tested above)
      if (v.readBy === 'compose') expect(compose, v.name).toContain(`\${${v.name}`);
      else expect(reads.has(v.name), `${v.name} (read by ${v.readBy})`).toBe(true);
    }
    expect(ENV_VARS.filter((v) => v.check).every((v) => ['api', 'worker', 'both'].includes(v.readBy))).toBe(true);
  });
});
