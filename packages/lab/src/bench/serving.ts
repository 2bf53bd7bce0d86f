/**
 * `npm run bench -- --serving`: latency of serving a tuned model through the API and a worker, as a client
 * sees it. Starts the built API (`apps/api/dist/main.js`) and a worker (`apps/worker/dist/main.js`) on the
 * database `edgetune_bench_serving` (created and migrated by scripts/db-migrate.mjs on the PostgreSQL server of
 * DATABASE_URL) and REDIS_URL under a fresh queue prefix, tunes the tiny model (`models/edgetune-tiny-llama`)
 * on a toy classification task, then times 32-token greedy completions of a text prompt, over HTTP:
 * - non-streaming: total time (the first token arrives with the last);
 * - streaming (SSE): time to the first text chunk, and total time;
 * after one warm-up request (which loads the adapter in the worker's serving process). Medians and all samples.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomString } from '@edgetune/core';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(here, '..', '..', '..', '..');
const MODEL = 'edgetune-tiny-llama';
const DB_NAME = 'edgetune_bench_serving';
/** The bench database's admin key (created by the API's bootstrap on the first run). */
const BENCH_KEY = 'et-bench-serving-admin-key-0123456789abcdef';
const PROMPT = 'The whale swam past the ship and the captain said';

/** Options of {@link runServingBench}. */
export interface ServingBenchOptions {
  out?: string;
  /** timed requests per mode */
  reps?: number;
  /** new tokens per completion */
  maxTokens?: number;
  /** tuning steps of the job that makes the adapter */
  steps?: number;
  /** the command line, recorded in the result */
  command: string;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x: number) => Math.round(x * 10) / 10;

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

/** Polls `fn` every 250 ms until it returns a truthy value. @throws Error after `ms`. */
async function until<T>(fn: () => Promise<T | false | null | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A toy keyword -> label task (the tiny model learns it in a few steps). */
function toyTask(n: number, seed: number): string {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const words = ['whale', 'ship', 'sea', 'captain', 'harpoon', 'voyage', 'ocean', 'sailor'];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const spam = rnd() < 0.5;
    const body = Array.from({ length: 6 }, () => words[Math.floor(rnd() * words.length)]).join(' ');
    lines.push(
      JSON.stringify({ prompt: `${spam ? 'FREE MONEY' : 'Meeting notes'}: ${body}\nAnswer:`, completion: spam ? ' spam' : ' ham' }),
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Runs the bench and writes its JSON to `o.out` (else stdout).
 * @throws Error when the database cannot be migrated, a process does not come up, or the job fails.
 */
export async function runServingBench(o: ServingBenchOptions): Promise<void> {
  const reps = o.reps ?? 5;
  const maxTokens = o.maxTokens ?? 32;
  const dir = mkdtempSync(join(tmpdir(), 'edgetune-bench-serving-'));
  const dbUrl = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/edgetune');
  dbUrl.pathname = `/${DB_NAME}`;
  const mig = spawnSync(process.execPath, [join(REPO, 'scripts', 'db-migrate.mjs'), 'deploy'], {
    env: { ...process.env, DATABASE_URL: dbUrl.toString() },
    encoding: 'utf8',
  });
  if (mig.status !== 0) throw new Error(`migrating ${DB_NAME} failed: ${mig.stderr}`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    DATABASE_URL: dbUrl.toString(),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    EDGETUNE_QUEUE_PREFIX: `edgetune-bench-${randomString(8)}`,
    EDGETUNE_MODELS_DIR: join(REPO, 'models'),
    EDGETUNE_BOOTSTRAP_API_KEY: BENCH_KEY,
    EDGETUNE_WORK_DIR: join(dir, 'work'),
    EDGETUNE_QUIET: '1',
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
  const procs: ChildProcess[] = [];
  const start = (name: string, file: string) => {
    const fd = openSync(join(dir, `${name}.log`), 'a');
    const p = spawn(process.execPath, [file], { cwd: REPO, env, stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    procs.push(p);
  };
  const headers = { authorization: `Bearer ${BENCH_KEY}` };
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers of the API
  const api = async (path: string, init: RequestInit = {}): Promise<any> => {
    const r = await fetch(base + path, { ...init, headers: { ...headers, ...(init.headers ?? {}) } });
    const body = await r.json();
    if (!r.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${r.status} ${JSON.stringify(body)}`);
    return body;
  };
  try {
    start('api', join(REPO, 'apps', 'api', 'dist', 'main.js'));
    start('worker', join(REPO, 'apps', 'worker', 'dist', 'main.js'));
    await until(async () => (await fetch(`${base}/v1/models/${MODEL}`, { headers })).ok, 60_000, 'the API and the model');
    const upload = async (name: string, text: string) => {
      const form = new FormData();
      form.append('purpose', 'fine-tune');
      form.append('file', new Blob([text]), name);
      return (await api('/v1/files', { method: 'POST', body: form })).id as string;
    };
    const trainingFile = await upload('train.jsonl', toyTask(48, 1));
    const validationFile = await upload('val.jsonl', toyTask(16, 2));
    const job = await api('/v1/fine_tuning/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        training_file: trainingFile,
        validation_file: validationFile,
        suffix: 'bench',
        hyperparameters: { max_steps: o.steps ?? 16, batch_size: 4, learning_rate: 5e-3 },
      }),
    });
    process.stderr.write(`tuning ${job.id} ...\n`);
    const done = await until(
      async () => {
        const j = await api(`/v1/fine_tuning/jobs/${job.id}`);
        if (j.status === 'failed' || j.status === 'cancelled') throw new Error(`job ${j.status}: ${JSON.stringify(j.error)}`);
        return j.status === 'succeeded' && j;
      },
      600_000,
      'the tuning job',
    );
    const body = (stream: boolean) =>
      JSON.stringify({ model: done.fine_tuned_model, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream });
    const post = () => ({ method: 'POST', headers: { ...headers, 'content-type': 'application/json' } });

    const plain = async () => {
      const t0 = performance.now();
      const r = await fetch(`${base}/v1/completions`, { ...post(), body: body(false) });
      const j = (await r.json()) as { usage: { completion_tokens: number } };
      if (!r.ok) throw new Error(`completion: ${r.status} ${JSON.stringify(j)}`);
      return { totalMs: performance.now() - t0, tokens: j.usage.completion_tokens as number };
    };
    const streamed = async () => {
      const t0 = performance.now();
      const r = await fetch(`${base}/v1/completions`, { ...post(), body: body(true) });
      if (!r.ok || !r.body) throw new Error(`streamed completion: ${r.status} ${await r.text()}`);
      let first: number | null = null;
      let text = '';
      const decoder = new TextDecoder();
      for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(part, { stream: true });
        if (first === null && /"text":"[^"]/.test(text)) first = performance.now() - t0;
      }
      const chunks = text.split('\n\n').filter((l) => l.startsWith('data: {')).length;
      return { firstTokenMs: first ?? Number.NaN, totalMs: performance.now() - t0, chunks };
    };

    const warm = await plain(); // loads the adapter in the worker's serving process
    const p: Awaited<ReturnType<typeof plain>>[] = [];
    const s: Awaited<ReturnType<typeof streamed>>[] = [];
    for (let i = 0; i < reps; i++) {
      p.push(await plain());
      s.push(await streamed());
    }
    const result = {
      date: new Date().toISOString().slice(0, 10),
      command: o.command,
      model: `models/${MODEL}`,
      job: { id: done.id, steps: o.steps ?? 16, data: 'toy keyword -> label task, 48 training examples' },
      prompt: PROMPT,
      max_tokens: maxTokens,
      temperature: 0,
      completion_tokens: p.map((x) => x.tokens),
      reps,
      cold_first_request_ms: round(warm.totalMs),
      non_streaming: { total_ms_median: round(median(p.map((x) => x.totalMs))), total_ms: p.map((x) => round(x.totalMs)) },
      streaming: {
        first_token_ms_median: round(median(s.map((x) => x.firstTokenMs))),
        total_ms_median: round(median(s.map((x) => x.totalMs))),
        first_token_ms: s.map((x) => round(x.firstTokenMs)),
        total_ms: s.map((x) => round(x.totalMs)),
        chunks: s.map((x) => x.chunks),
      },
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, loadavg_1m: round(loadavg()[0]) },
    };
    const json = `${JSON.stringify(result, null, 2)}\n`;
    if (o.out) writeFileSync(o.out, json);
    process.stdout.write(json);
  } finally {
    for (const p of procs)
      try {
        process.kill(-p.pid!, 'SIGTERM');
      } catch {
        // gone
      }
    await new Promise((r) => setTimeout(r, 3000));
    for (const p of procs)
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    rmSync(dir, { recursive: true, force: true });
  }
}
