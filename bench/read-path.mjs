#!/usr/bin/env node
// Read-path benchmark: `GET /v1/jobs/{id}` of the API (built: run `npx tsc -b` first) against a bare Fastify
// route in the same process, each loaded in turn by the same HTTP load generator (a child process: N keep-alive
// connections, each sending its next request when the last one answered) and reported side by side: requests
// per second, p50/p99 latency, and the jobs route's share of the bare route's rate. Rate limits are off.
// It makes its own database on the local PostgreSQL and its own Redis key prefix, and drops both at the end.
//
//   node bench/read-path.mjs [--connections 100] [--seconds 10] [--rounds 3] [--out bench/results/read-path-DATE.json]
//                            [--note 'what else ran on the machine']
//
// Environment: EDGETUNE_BENCH_PG_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres),
// REDIS_URL (default redis://127.0.0.1:6379).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Load generator (child process): `connections` loops of GET `url` for `seconds`; prints counts and latency quantiles, ms. */
async function load({ url, key, connections, seconds }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const latencies = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const once = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.get(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) latencies.push(performance.now() - t0);
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) await once();
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? null;
  const round = (x) => (x === null ? null : Math.round(x * 100) / 100);
  return {
    requests: latencies.length,
    errors,
    seconds: Math.round(elapsed * 100) / 100,
    req_per_s: Math.round(latencies.length / elapsed),
    p50_ms: round(q(0.5)),
    p99_ms: round(q(0.99)),
    max_ms: round(latencies.at(-1) ?? null),
  };
}

if (process.argv[2] === '--load') {
  process.stdout.write(JSON.stringify(await load(JSON.parse(process.argv[3]))));
  process.exit(0);
}

const { values: opts } = parseArgs({
  options: {
    connections: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    out: { type: 'string' },
    note: { type: 'string' },
  },
});
const connections = Number(opts.connections);
const seconds = Number(opts.seconds);
const rounds = Number(opts.rounds);

/**
 * Runs the load generator in a child process and returns its summary, with the CPU time this (the server's)
 * process spent per answered request, µs: a figure that other load on the machine disturbs less than the rates.
 */
async function runLoad(url, key, secs = seconds) {
  const cpu = process.cpuUsage();
  const r = await loadChild(url, key, secs);
  const used = process.cpuUsage(cpu);
  return { ...r, server_cpu_us_per_req: r.requests ? Math.round((used.user + used.system) / r.requests) : null };
}

/** The load generator's summary. */
function loadChild(url, key, secs) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(import.meta.url), '--load', JSON.stringify({ url, key, connections, seconds: secs })],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load generator exited ${code}`))));
  });
}

const pg = (await import('pg')).default;
const adminUrl = process.env.EDGETUNE_BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const admin = async (sql) => {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
};

const id = randomBytes(6).toString('hex');
const dbName = `edgetune_bench_${id}`;
const dbUrl = new URL(adminUrl);
dbUrl.pathname = `/${dbName}`;
const dir = mkdtempSync(join(tmpdir(), `edgetune-bench-${id}-`));
const prefix = `edgetune-bench-${id}`;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY = `et-bench-${randomBytes(20).toString('hex')}`;

// a base model the API accepts without loading it (a LLaMA config and placeholder weights)
const modelDir = join(dir, 'models', 'tiny-llama');
mkdirSync(modelDir, { recursive: true });
writeFileSync(
  join(modelDir, 'config.json'),
  JSON.stringify({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 384,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
  }),
);
writeFileSync(join(modelDir, 'model.safetensors'), 'weights');

await admin(`CREATE DATABASE "${dbName}"`);
let stopApi = async () => {};
let bare;
try {
  const mig = spawnSync(process.execPath, [join(ROOT, 'scripts', 'db-migrate.mjs'), 'deploy'], {
    env: { ...process.env, DATABASE_URL: dbUrl.toString() },
    encoding: 'utf8',
  });
  if (mig.status !== 0) throw new Error(`migration failed: ${mig.stderr}`);
  const { startApi } = await import(join(ROOT, 'apps', 'api', 'dist', 'server.js'));
  const api = await startApi(
    {
      ...process.env,
      DATABASE_URL: dbUrl.toString(),
      REDIS_URL: redisUrl,
      EDGETUNE_QUEUE_PREFIX: prefix,
      EDGETUNE_MODELS_DIR: join(dir, 'models'),
      EDGETUNE_BOOTSTRAP_API_KEY: KEY,
      EDGETUNE_WORK_DIR: join(dir, 'work'),
      EDGETUNE_RATE_LIMIT_PER_KEY: '0',
      EDGETUNE_RATE_LIMIT_PER_ADDRESS: '0',
      EDGETUNE_AUTH_FAILURE_LIMIT: '0',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'warn',
    },
    { logger: false },
  );
  stopApi = api.stop;
  const base = `http://127.0.0.1:${api.port}`;
  const auth = { authorization: `Bearer ${KEY}` };

  // one job to read
  const form = new FormData();
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([`${JSON.stringify({ prompt: 'a', completion: ' b' })}\n`]), 'data.jsonl');
  const file = await (await fetch(`${base}/v1/files`, { method: 'POST', headers: auth, body: form })).json();
  const job = await (
    await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-llama', training_file: file.id, method: { type: 'lora' }, hyperparameters: { n_epochs: 1 } }),
    })
  ).json();
  if (!job.id) throw new Error(`job not created: ${JSON.stringify(job)}`);

  // the bare route, in this process
  const Fastify = (await import('fastify')).default;
  bare = Fastify({ logger: false });
  bare.get('/bare', async () => ({ ok: true }));
  await bare.listen({ port: 0, host: '127.0.0.1' });
  const bareUrl = `http://127.0.0.1:${bare.server.address().port}/bare`;
  const jobUrl = `${base}/v1/jobs/${job.id}`;

  // warm both routes (JIT, pool connections, the key cache) before measuring
  await runLoad(bareUrl, null, 2);
  await runLoad(jobUrl, KEY, 2);
  const loadBefore = loadavg();
  const runs = [];
  for (let r = 0; r < rounds; r++) {
    const b = await runLoad(bareUrl, null);
    const j = await runLoad(jobUrl, KEY);
    const ratio = Math.round((j.req_per_s / b.req_per_s) * 1000) / 1000;
    runs.push({ round: r + 1, bare: b, jobs: j, ratio });
    console.log(
      `round ${r + 1}: bare ${b.req_per_s} req/s p50 ${b.p50_ms} ms p99 ${b.p99_ms} ms (${b.server_cpu_us_per_req} µs CPU/req) | ` +
        `GET /v1/jobs/{id} ${j.req_per_s} req/s p50 ${j.p50_ms} ms p99 ${j.p99_ms} ms (${j.server_cpu_us_per_req} µs CPU/req) | ratio ${ratio}`,
    );
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summary = {
    ratio_median: median(runs.map((x) => x.ratio)),
    jobs_p99_ms_median: median(runs.map((x) => x.jobs.p99_ms)),
    target: 'ratio >= 0.2 and jobs p99 < 50 ms',
  };
  summary.met = summary.ratio_median >= 0.2 && summary.jobs_p99_ms_median < 50;
  console.log(
    `median ratio ${summary.ratio_median}, median jobs p99 ${summary.jobs_p99_ms_median} ms: target ${summary.met ? 'met' : 'not met'}`,
  );

  const date = new Date().toISOString().slice(0, 10);
  const out = opts.out ?? join(ROOT, 'bench', 'results', `read-path-${date}.json`);
  const result = {
    command: `node bench/read-path.mjs --connections ${connections} --seconds ${seconds} --rounds ${rounds}`,
    date,
    ...(opts.note ? { note: opts.note } : {}),
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model,
      memory_bytes: totalmem(),
      node: process.version,
      loadavg_before: loadBefore,
    },
    connections,
    seconds_per_run: seconds,
    runs,
    summary,
  };
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${relative(process.cwd(), out)}`);
} finally {
  await bare?.close();
  await stopApi();
  await admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
  const { Redis } = await import('ioredis');
  const r = new Redis(redisUrl);
  const keys = await r.keys(`${prefix}:*`);
  if (keys.length) await r.del(...keys);
  r.disconnect();
  rmSync(dir, { recursive: true, force: true });
}
