// GET /metrics (Prometheus text): the request histogram by route pattern and status, jobs by status, the job
// duration histogram from the rows, the queue depth from BullMQ, per-worker gauges from the workers table and
// running jobs' latest metrics; the optional bearer token; a scrape with Redis down still answers. Also: the
// provisioned Grafana dashboard is valid JSON and queries only metric names a real scrape exposes.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { buildApp } from '../../apps/api/src/app.js';
import { loadConfig } from '../../packages/core/src/service/config.js';
import { QUEUE_NAME, type QueueJobData } from '../../packages/core/src/service/queue.js';
import { createPrisma } from '../../packages/store/src/db.js';
import { redisConnection } from '../../packages/store/src/queue.js';
import { heartbeatWorker } from '../../packages/store/src/workers.js';
import { fakeModel, Client, createTestEnv, startTestApi, REPO_ROOT, type TestEnv } from '../helpers/service.js';

const HEARTBEAT_MS = 1000;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let db: ReturnType<typeof createPrisma>;

/** One sample of the text exposition format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (version 0.0.4): samples only, comments checked for HELP/TYPE pairs. */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The value of the one sample named `name` whose labels include `labels` (undefined when none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0]?.value;
}

async function scrape(client = c, headers: Record<string, string> = {}): Promise<Sample[]> {
  const r = await client.withKey(null).get('/metrics', headers);
  expect(r.status, r.text).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(r.text);
}

const train = () =>
  `${Array.from({ length: 20 }, (_, i) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' })).join('\n')}\n`;

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => fakeModel(join(d, 'tiny-llama')),
    env: { EDGETUNE_WORKER_HEARTBEAT_MS: String(HEARTBEAT_MS) },
  });
  api = await startTestApi(t);
  c = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 2 });
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

describe('GET /metrics', () => {
  it('times requests by route pattern and status code', async () => {
    const before = await scrape();
    const route = { method: 'GET', route: '/v1/files/:id' };
    const count = (s: Sample[], status_code: string) =>
      value(s, 'edgetune_http_request_duration_seconds_count', { ...route, status_code }) ?? 0;
    const file = (await c.upload(train())).body.id as string;
    for (const id of [file, file, file, 'file_nope']) await c.get(`/v1/files/${id}`);
    await c.withKey(null).get(`/v1/files/${file}`); // 401 from the auth hook, same route
    await c.get('/no/such/path');
    await c.get('/no/such/other/path');
    const s = await scrape();
    expect(count(s, '200') - count(before, '200')).toBe(3);
    expect(count(s, '404') - count(before, '404')).toBe(1);
    expect(count(s, '401') - count(before, '401')).toBe(1);
    // unknown URLs share one series, not one each
    expect(value(s, 'edgetune_http_request_duration_seconds_count', { route: 'unmatched', status_code: '404' })).toBe(2);
    expect(s.some((x) => x.labels.route?.startsWith('/no/'))).toBe(false);
    // cumulative buckets end at +Inf = count
    expect(value(s, 'edgetune_http_request_duration_seconds_bucket', { ...route, status_code: '200', le: '+Inf' })).toBe(count(s, '200'));
    // default process metrics, prefixed
    expect(value(s, 'edgetune_api_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('counts jobs by status, the queue by state, and finished jobs by duration from the rows', async () => {
    const file = (await c.upload(train())).body.id as string;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await c.post('/v1/jobs', { model: 'tiny-llama', training_file: file, hyperparameters: { max_steps: 4 } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      ids.push(r.body.id);
    }
    let s = await scrape();
    expect(value(s, 'edgetune_jobs', { status: 'queued' })).toBe(3);
    expect(value(s, 'edgetune_jobs', { status: 'running' })).toBe(0);
    expect(value(s, 'edgetune_queue_jobs', { queue: 'tuning', state: 'waiting' })).toBe(3);
    expect(value(s, 'edgetune_queue_jobs', { queue: 'tuning', state: 'active' })).toBe(0);
    expect(value(s, 'edgetune_metrics_source_up', { source: 'redis' })).toBe(1);
    expect(value(s, 'edgetune_metrics_source_up', { source: 'postgresql' })).toBe(1);
    expect(s.some((x) => x.name.startsWith('edgetune_job_duration_seconds'))).toBe(false);

    // two finished: 42 s succeeded, 2 h failed (as a worker records them)
    const end = new Date();
    const at = (secondsBefore: number) => new Date(end.getTime() - secondsBefore * 1000);
    await db.job.update({ where: { id: ids[0] }, data: { status: 'succeeded', startedAt: at(42), finishedAt: end } });
    await db.job.update({ where: { id: ids[1] }, data: { status: 'failed', startedAt: at(7200), finishedAt: end } });
    s = await scrape();
    expect(value(s, 'edgetune_jobs', { status: 'queued' })).toBe(1);
    expect(value(s, 'edgetune_jobs', { status: 'succeeded' })).toBe(1);
    expect(value(s, 'edgetune_jobs', { status: 'failed' })).toBe(1);
    const bucket = (status: string, le: string) => value(s, 'edgetune_job_duration_seconds_bucket', { status, le });
    expect([bucket('succeeded', '30'), bucket('succeeded', '60'), bucket('succeeded', '+Inf')]).toEqual([0, 1, 1]);
    expect([bucket('failed', '3600'), bucket('failed', '7200'), bucket('failed', '+Inf')]).toEqual([0, 1, 1]);
    expect(value(s, 'edgetune_job_duration_seconds_sum', { status: 'succeeded' })).toBeCloseTo(42, 3);
    expect(value(s, 'edgetune_job_duration_seconds_count', { status: 'failed' })).toBe(1);
  });

  it("reports every registered worker: liveness, heartbeat, and its running jobs' step time, tokens/s and RSS", async () => {
    const device = {
      memoryBudgetBytes: 3 * 2 ** 30,
      totalMemoryBytes: 8 * 2 ** 30,
      threads: 2,
      backend: 'wasm',
      matmul: 'openblas(2 threads)',
      matmulGflops: 40,
      stepTimeFactor: null,
      tensorHeapCeilingBytes: null,
    };
    await heartbeatWorker(db, { id: 'box-a:11', host: 'box-a', pid: 11, concurrency: 1, device });
    await heartbeatWorker(db, { id: 'box-b:22', host: 'box-b', pid: 22, concurrency: 1, device });
    await db.worker.update({ where: { id: 'box-b:22' }, data: { heartbeatAt: new Date(Date.now() - 10 * HEARTBEAT_MS) } });
    // a running job on box-a with the step metrics a worker writes
    const job = await db.job.findFirstOrThrow({ where: { status: 'queued' } });
    await db.job.update({
      where: { id: job.id },
      data: {
        status: 'running',
        workerId: 'box-a:11',
        startedAt: new Date(),
        latestMetrics: { step: 2, total_steps: 4, step_ms: 1500, tokens_per_sec: 321.5, rss_bytes: 500_000_000 },
      },
    });
    const s = await scrape();
    const a = { worker_id: 'box-a:11' };
    const b = { worker_id: 'box-b:22' };
    expect(value(s, 'edgetune_worker_up', a)).toBe(1);
    expect(value(s, 'edgetune_worker_up', b)).toBe(0);
    expect(Math.abs(value(s, 'edgetune_worker_last_heartbeat_timestamp_seconds', a)! - Date.now() / 1000)).toBeLessThan(30);
    expect(value(s, 'edgetune_worker_memory_budget_bytes', a)).toBe(3 * 2 ** 30);
    expect(value(s, 'edgetune_worker_running_jobs', a)).toBe(1);
    expect(value(s, 'edgetune_worker_running_jobs', b)).toBe(0);
    expect(value(s, 'edgetune_worker_step_duration_seconds', a)).toBe(1.5);
    expect(value(s, 'edgetune_worker_tokens_per_second', a)).toBe(321.5);
    expect(value(s, 'edgetune_worker_resident_memory_bytes', a)).toBe(500_000_000);
    // an idle worker reports no step metrics (rather than a misleading 0)
    expect(value(s, 'edgetune_worker_step_duration_seconds', b)).toBeUndefined();
    expect(value(s, 'edgetune_jobs', { status: 'running' })).toBe(1);
  });

  it('is left out of the OpenAPI document', async () => {
    const doc = (await c.get('/openapi.json')).body;
    expect(Object.keys(doc.paths)).not.toContain('/metrics');
  });
});

describe('GET /metrics with EDGETUNE_METRICS_TOKEN', () => {
  it('answers only the bearer token (401 problem+json otherwise; API keys do not open it)', async () => {
    const guarded = await startTestApi({ ...t, env: { ...t.env, EDGETUNE_METRICS_TOKEN: 'scrape-secret' } });
    try {
      const g = new Client(guarded.url, null);
      const none = await g.get('/metrics');
      expect(none.status).toBe(401);
      expect(none.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(none.body.code).toBe('missing_metrics_token');
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      for (const bad of ['Bearer wrong', `Bearer ${c.key}`, 'Basic abc']) {
        const r = await g.get('/metrics', { authorization: bad });
        expect(r.status, bad).toBe(401);
        expect(r.body.code).toBe('invalid_metrics_token');
      }
      const s = await scrape(g, { authorization: 'Bearer scrape-secret' });
      expect(value(s, 'edgetune_metrics_source_up', { source: 'postgresql' })).toBe(1);
    } finally {
      await guarded.stop();
    }
  });
});

describe('GET /metrics with Redis down', () => {
  it('answers 200 at once without the queue series and says which source was skipped', async () => {
    // the API's own wiring (server.ts) with a Redis where nothing listens: it never connects
    const redis = redisConnection('redis://127.0.0.1:1');
    redis.on('error', () => {});
    const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: t.prefix });
    queue.on('error', () => {});
    const db2 = createPrisma(t.databaseUrl, { max: 1 });
    const app = await buildApp({ config: loadConfig(t.env), db: db2, redis, queue });
    try {
      await app.ready();
      const t0 = Date.now();
      const r = await app.inject({ method: 'GET', url: '/metrics' });
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(r.statusCode, r.body).toBe(200);
      const s = parse(r.body);
      expect(value(s, 'edgetune_metrics_source_up', { source: 'redis' })).toBe(0);
      expect(value(s, 'edgetune_metrics_source_up', { source: 'postgresql' })).toBe(1);
      expect(s.some((x) => x.name === 'edgetune_queue_jobs')).toBe(false);
      // PostgreSQL's series are all there
      expect(s.filter((x) => x.name === 'edgetune_jobs').map((x) => x.labels.status)).toContain('running');
    } finally {
      await app.close();
      redis.disconnect();
      await db2.$disconnect();
    }
  });
});

describe('deploy/grafana dashboard', () => {
  const dir = join(REPO_ROOT, 'deploy', 'grafana', 'dashboards');
  const dashboards = readdirSync(dir).filter((f) => f.endsWith('.json'));

  it('is valid JSON with panels on the provisioned Prometheus datasource', () => {
    expect(dashboards.length).toBeGreaterThan(0);
    const ds = readFileSync(join(REPO_ROOT, 'deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8');
    const uid = /^\s*uid:\s*(\S+)/m.exec(ds)?.[1];
    expect(uid).toBeTruthy();
    for (const f of dashboards) {
      const d = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      expect(d.title, f).toBeTruthy();
      expect(d.panels.length, f).toBeGreaterThan(5);
      for (const p of d.panels) {
        if (p.type === 'row') continue;
        expect(p.datasource, `${f}: ${p.title}`).toEqual({ type: 'prometheus', uid });
        expect(p.targets.length, `${f}: ${p.title}`).toBeGreaterThan(0);
      }
    }
  });

  it('queries only metric names a real scrape exposes', async () => {
    const exposed = new Set((await scrape()).map((s) => s.name));
    const queried = new Set<string>();
    for (const f of dashboards) {
      const d = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      for (const p of d.panels)
        for (const q of p.targets ?? []) for (const m of String(q.expr).matchAll(/\bedgetune_[a-z0-9_]+/g)) queried.add(m[0]);
    }
    expect(queried.size).toBeGreaterThan(8);
    for (const name of queried) expect(exposed, name).toContain(name);
  });
});
