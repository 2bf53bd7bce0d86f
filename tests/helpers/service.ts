// Test harness for the service: a database and queue prefix of its own per run (real PostgreSQL and
// Redis), the API in-process on a random port, workers as child processes, and a small HTTP client.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(here, '..', '..');
const PG_ADMIN_URL = process.env.EDGETUNE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const SHARED_REDIS_URL = process.env.EDGETUNE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The bootstrap admin key of every test environment. */
export const ADMIN_KEY = 'et-test-admin-key-0123456789abcdefghijklmnop';

/**
 * A base model folder the API accepts without loading it: a LLaMA config.json (hidden 32, 4 heads, 2 KV heads,
 * vocab 384) and, unless `weights` is null, placeholder bytes as model.safetensors (the API only fingerprints them).
 */
export function fakeModel(dir: string, opts: { layers?: number; weights?: string | null } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: opts.layers ?? 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 384,
      max_position_embeddings: 512,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
    }),
  );
  const weights = opts.weights === undefined ? 'weights v1' : opts.weights;
  if (weights !== null) writeFileSync(join(dir, 'model.safetensors'), weights);
}

/** One isolated service environment. */
export interface TestEnv {
  dir: string;
  dbName: string;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  modelsDir: string;
  /** environment for API/worker processes */
  env: NodeJS.ProcessEnv;
  /** drops the database and the queue keys, removes the folder */
  destroy: () => Promise<void>;
}

async function admin(sql: string, adminUrl = PG_ADMIN_URL): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/**
 * Creates a database `edgetune_test_<random>` migrated with `npm run db:migrate`'s script, a queue
 * prefix, and a models folder (filled by `setupModels`, e.g. with createTinyModel). `pgAdminUrl` and
 * `redisUrl` choose other servers than the shared ones (e.g. private ones from stores.ts).
 */
export async function createTestEnv(
  opts: { setupModels?: (modelsDir: string) => void; env?: NodeJS.ProcessEnv; pgAdminUrl?: string; redisUrl?: string } = {},
): Promise<TestEnv> {
  const id = randomBytes(6).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), `edgetune-svc-${id}-`));
  const dbName = `edgetune_test_${id}`;
  const adminUrl = opts.pgAdminUrl ?? PG_ADMIN_URL;
  const redisUrl = opts.redisUrl ?? SHARED_REDIS_URL;
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  const databaseUrl = u.toString();
  await admin(`CREATE DATABASE "${dbName}"`, adminUrl);
  const modelsDir = join(dir, 'models');
  try {
    const mig = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'db-migrate.mjs'), 'deploy'], {
      env: { ...process.env, DATABASE_URL: databaseUrl },
      encoding: 'utf8',
    });
    if (mig.status !== 0) throw new Error(`migration failed: ${mig.stderr}`);
    mkdirSync(modelsDir, { recursive: true });
    opts.setupModels?.(modelsDir);
  } catch (e) {
    await admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`, adminUrl).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const prefix = `edgetune-test-${id}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    EDGETUNE_QUEUE_PREFIX: prefix,
    EDGETUNE_MODELS_DIR: modelsDir,
    EDGETUNE_BOOTSTRAP_API_KEY: ADMIN_KEY,
    EDGETUNE_WORK_DIR: join(dir, 'work'),
    EDGETUNE_LOCK_DURATION_MS: '2000',
    EDGETUNE_STALLED_INTERVAL_MS: '1000',
    EDGETUNE_QUIET: '1',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...opts.env,
  };
  const destroy = async () => {
    await admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`, adminUrl).catch(() => {});
    // a private Redis may be gone by now: give up rather than retry forever
    const r = new Redis(redisUrl, { retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => {});
    try {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
        if (keys.length) await r.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } catch {
      // the Redis is gone, and its keys with it
    } finally {
      r.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, dbName, databaseUrl, redisUrl, prefix, modelsDir, env, destroy };
}

/** Starts the API in this process (port 0); returns its base URL. */
export async function startTestApi(t: TestEnv): Promise<{ url: string; stop: () => Promise<void> }> {
  const { startApi } = await import('../../apps/api/src/server.js');
  const { port, stop } = await startApi(t.env, { logger: false });
  return { url: `http://127.0.0.1:${port}`, stop };
}

/** A worker child process (its own process group, so a test can kill it and its sandbox at once). */
export interface WorkerProcess {
  proc: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
  /** signal to the worker only */
  signal: (sig: NodeJS.Signals) => void;
  /** SIGKILL to the whole group (worker + sandboxed processors), like a box losing power */
  killGroup: () => void;
  log: () => string;
}

/** How to run the worker: its build (`npm test` builds every package before any test runs). */
export function workerCommand(): string[] {
  return [join(REPO_ROOT, 'apps', 'worker', 'dist', 'main.js')];
}

/** Spawns a worker process (see {@link workerCommand}) with the environment's settings. */
export function spawnWorker(t: TestEnv, name = 'worker', env: NodeJS.ProcessEnv = {}): WorkerProcess {
  const logFile = join(t.dir, `${name}-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const proc = spawn(process.execPath, workerCommand(), {
    cwd: REPO_ROOT,
    env: { ...t.env, EDGETUNE_HOST_NAME: name, ...env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    logFile,
    exited,
    signal: (sig) => {
      try {
        proc.kill(sig);
      } catch {
        /* gone */
      }
    },
    killGroup: () => {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    },
    log: () => readFileSync(logFile, 'utf8'),
  };
}

/** Stops a worker (SIGTERM, then SIGKILL to the group after `ms`). */
export async function stopWorker(w: WorkerProcess, ms = 15_000): Promise<void> {
  if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  w.signal('SIGTERM');
  const timer = setTimeout(() => w.killGroup(), ms);
  await w.exited;
  clearTimeout(timer);
  w.killGroup();
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  what = 'condition',
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Response of {@link Client}. */
export interface Res<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** Minimal HTTP client with a bearer key. */
export class Client {
  constructor(
    readonly base: string,
    readonly key: string | null = ADMIN_KEY,
  ) {}

  withKey(key: string | null): Client {
    return new Client(this.base, key);
  }

  async request<T = any>(
    method: string,
    path: string,
    opts: { json?: unknown; body?: BodyInit; headers?: Record<string, string> } = {},
  ): Promise<Res<T>> {
    const headers: Record<string, string> = { ...(this.key ? { authorization: `Bearer ${this.key}` } : {}), ...opts.headers };
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    const r = await fetch(this.base + path, { method, headers, body });
    const text = await r.text();
    let parsed: unknown = text;
    if (/json/.test(r.headers.get('content-type') ?? '')) parsed = JSON.parse(text);
    return { status: r.status, headers: r.headers, body: parsed as T, text };
  }

  get<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('GET', path, { headers });
  }
  post<T = any>(path: string, json?: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, { json: json ?? {}, headers });
  }
  delete<T = any>(path: string) {
    return this.request<T>('DELETE', path);
  }

  /** Uploads text as a JSONL file. */
  upload<T = any>(
    content: string | Uint8Array,
    filename = 'data.jsonl',
    purpose: string | null = 'fine-tune',
    headers?: Record<string, string>,
  ) {
    const form = new FormData();
    if (purpose !== null) form.append('purpose', purpose);
    form.append('file', new Blob([content]), filename);
    return this.request<T>('POST', '/v1/files', { body: form, headers });
  }

  /** Downloads raw bytes. */
  async bytes(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; data: Buffer }> {
    const r = await fetch(this.base + path, { headers: { ...(this.key ? { authorization: `Bearer ${this.key}` } : {}), ...headers } });
    return { status: r.status, headers: r.headers, data: Buffer.from(await r.arrayBuffer()) };
  }
}

/** A parsed SSE message. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Reads an SSE stream until it ends (or `until` says stop); returns the messages. */
export async function readSse(
  url: string,
  key: string,
  opts: { lastEventId?: string; until?: (m: SseMessage) => boolean; timeoutMs?: number } = {},
): Promise<{ status: number; contentType: string | null; messages: SseMessage[] }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), opts.timeoutMs ?? 120_000);
  const r = await fetch(url, {
    headers: {
      authorization: `Bearer ${key}`,
      accept: 'text/event-stream',
      ...(opts.lastEventId ? { 'last-event-id': opts.lastEventId } : {}),
    },
    signal: ac.signal,
  });
  const messages: SseMessage[] = [];
  if (r.status !== 200 || !r.body) {
    clearTimeout(timer);
    return { status: r.status, contentType: r.headers.get('content-type'), messages };
  }
  const decoder = new TextDecoder();
  let buf = '';
  try {
    outer: for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const m: SseMessage = { event: 'message', data: '' };
        let any = false;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const [field, ...rest] = line.split(':');
          const value = rest.join(':').replace(/^ /, '');
          if (field === 'id') m.id = value;
          else if (field === 'event') m.event = value;
          else if (field === 'data') {
            m.data += (m.data ? '\n' : '') + value;
            any = true;
          }
        }
        if (!any) continue;
        messages.push(m);
        if (opts.until?.(m)) break outer;
      }
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { status: 200, contentType: r.headers.get('content-type'), messages };
}
