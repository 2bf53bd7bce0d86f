// Store outages on private PostgreSQL and Redis instances: while one is down, what needs it answers 503
// problem+json with Retry-After and a stable code (never a hang, never a 500), what needs only the other store
// still answers, and once the store is back the same API serves again. Processes that start without a store
// say so in a line per attempt and start once it is there.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ADMIN_KEY, Client, createTestEnv, fakeModel, REPO_ROOT, startTestApi, waitFor, type TestEnv } from '../helpers/service.js';
import { freePort, startPostgres, startRedis, type PrivateStore } from '../helpers/stores.js';

/** A request that has not answered by then hangs (the API answers an outage within about 2 s). */
const HANG_MS = 10_000;

let pgs: PrivateStore;
let rds: PrivateStore;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let client: Client;
let jobId: string;
let body: Record<string, unknown>;

const jsonl = (n: number) =>
  `${Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' })).join('\n')}\n`;

/** `method path` on the API `client` points at, as the admin, with a deadline: status, headers and parsed body (a hang throws a TimeoutError). */
async function call(method: string, path: string, json?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(client.base + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(HANG_MS),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: /json/.test(r.headers.get('content-type') ?? '') ? JSON.parse(text) : text };
}

/** Asserts a 503 problem with `code` and a Retry-After in seconds. */
function expectOutage(r: Awaited<ReturnType<typeof call>>, code: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(503);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status: 503, code });
  expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
}

beforeAll(async () => {
  [pgs, rds] = await Promise.all([startPostgres(), startRedis()]);
  t = await createTestEnv({
    pgAdminUrl: pgs.url,
    redisUrl: rds.url,
    setupModels: (d) => fakeModel(join(d, 'tiny-llama'), { weights: null }),
  });
  api = await startTestApi(t);
  client = new Client(api.url);
  const train = await client.upload(jsonl(40), 'train.jsonl');
  expect(train.status).toBe(201);
  body = { model: 'tiny-llama', training_file: train.body.id, hyperparameters: { max_steps: 8 } };
  const job = await call('POST', '/v1/jobs', body);
  expect(job.status, JSON.stringify(job.body)).toBe(201);
  jobId = job.body.id;
}, 60_000);

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
  await Promise.all([pgs?.destroy(), rds?.destroy()]);
}, 30_000);

describe('Redis down (killed, no persistence)', () => {
  it('POST /v1/jobs answers 503 queue_unavailable; reads that need only PostgreSQL answer; after the restart jobs are created again', async () => {
    await rds.stop('kill');
    try {
      const post = await call('POST', '/v1/jobs', body, { 'idempotency-key': 'outage-1' });
      expectOutage(post, 'queue_unavailable');
      // the row is kept, failed before it was accepted: a retry with the same key creates the job afresh
      const list = await call('GET', '/v1/jobs?limit=10');
      expect(list.status).toBe(200);
      const failed = list.body.data.find((j: { id: string }) => j.id !== jobId);
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'queue_unavailable' } });

      expect((await call('GET', `/v1/jobs/${jobId}`)).status).toBe(200);
      expect((await call('GET', `/v1/jobs/${jobId}/events`)).status).toBe(200);
      expect((await call('GET', '/v1/files')).status).toBe(200);
      // the event stream follows the job by polling
      const stream = await fetch(`${api.url}/v1/jobs/${jobId}/events/stream`, {
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
        signal: AbortSignal.timeout(HANG_MS),
      });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const first = await stream.body!.getReader().read();
      expect(new TextDecoder().decode(first.value)).toContain('retry:');
      await stream.body!.cancel().catch(() => {});

      const ready = await call('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks).toMatchObject({ database: 'ok', redis: expect.stringMatching(/^error/) });
      expect((await call('GET', '/healthz')).status).toBe(200);
      const metrics = await call('GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/edgetune_metrics_source_up\{source="redis"\} 0/);
    } finally {
      await rds.start();
    }
    const again = await waitFor(
      async () => {
        const r = await call('POST', '/v1/jobs', body, { 'idempotency-key': 'outage-1' });
        return r.status === 201 ? r : null;
      },
      20_000,
      'POST /v1/jobs to succeed once Redis is back',
      200,
    );
    expect(again.body.status).toBe('queued');
    expect((await call('GET', '/readyz')).status).toBe(200);
  }, 60_000);
});

describe('PostgreSQL down (postmaster killed)', () => {
  it('reads and writes answer 503 database_unavailable; what needs no database answers; after the restart the API serves again', async () => {
    await pgs.stop('kill');
    try {
      expectOutage(await call('GET', '/v1/jobs'), 'database_unavailable');
      expectOutage(await call('GET', `/v1/jobs/${jobId}`), 'database_unavailable');
      expectOutage(await call('POST', '/v1/jobs', body), 'database_unavailable');
      const form = new FormData();
      form.append('purpose', 'fine-tune');
      form.append('file', new Blob([jsonl(4)]), 'more.jsonl');
      const upload = await fetch(`${api.url}/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
        body: form,
        signal: AbortSignal.timeout(HANG_MS),
      });
      expect(upload.status).toBe(503);
      expect(await upload.json()).toMatchObject({ code: 'database_unavailable' });

      expect((await call('GET', '/healthz')).status).toBe(200);
      const ready = await call('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks).toMatchObject({ redis: 'ok', database: expect.stringMatching(/^error/) });
      const metrics = await call('GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/edgetune_metrics_source_up\{source="postgresql"\} 0/);
    } finally {
      await pgs.start();
    }
    const list = await waitFor(
      async () => {
        const r = await call('GET', '/v1/jobs');
        return r.status === 200 ? r : null;
      },
      20_000,
      'GET /v1/jobs to answer once PostgreSQL is back',
      200,
    );
    expect(list.body.data.map((j: { id: string }) => j.id)).toContain(jobId);
    expect((await call('POST', '/v1/jobs', body)).status).toBe(201);
  }, 60_000);
});

/** Starts node script `entry` (under the repository) with `env`, collecting its stderr; `until` waits for a condition on it or for the exit. */
function startProcess(entry: string, env: NodeJS.ProcessEnv) {
  const p = spawn(process.execPath, [join(REPO_ROOT, entry)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => {
    err += d;
  });
  p.stdout.resume();
  return {
    p,
    stderr: () => err,
    until: (what: string, ok: (stderr: string) => boolean, ms = 20_000) =>
      waitFor(async () => ok(err) || p.exitCode !== null, ms, what, 100),
    stop: async () => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((res) => p.once('exit', res));
      p.kill('SIGKILL');
      await exited;
    },
  };
}

describe('start without a store', () => {
  it('the API waits for PostgreSQL, a line per attempt, and starts without Redis; a store that goes is one line, and one when it is back', async () => {
    await Promise.all([pgs.stop('fast'), rds.stop('kill')]);
    const port = await freePort();
    const proc = startProcess('apps/api/dist/main.js', { ...t.env, PORT: String(port) });
    const base = `http://127.0.0.1:${port}`;
    const lines = () => proc.stderr().trim().split('\n');
    const count = (re: RegExp) => lines().filter((l) => re.test(l)).length;
    const pgRetry = new RegExp(
      `^edgetune-api: PostgreSQL at 127\\.0\\.0\\.1:${pgs.port} is unreachable \\(ECONNREFUSED\\); retrying in \\d+ s$`,
    );
    const pgGone = new RegExp(`^edgetune-api: PostgreSQL at 127\\.0\\.0\\.1:${pgs.port} is unreachable \\(.+\\); retrying$`);
    const pgBack = `edgetune-api: PostgreSQL at 127.0.0.1:${pgs.port} is reachable again`;
    const redisGone = new RegExp(`^edgetune-api: Redis at 127\\.0\\.0\\.1:${rds.port} is unreachable \\(.+\\); retrying$`);
    const redisBack = `edgetune-api: Redis at 127.0.0.1:${rds.port} is reachable again`;
    const post = () => call('POST', '/v1/jobs', body).catch(() => null);
    try {
      await proc.until('two retry lines', () => count(pgRetry) >= 2);
      expect(proc.p.exitCode).toBeNull();
      for (const l of lines()) expect(l).toMatch(pgRetry); // nothing else: no stack trace
      await pgs.start();
      await waitFor(
        () =>
          fetch(`${base}/healthz`).then(
            (r) => r.ok,
            () => false,
          ),
        30_000,
        'the API to listen once PostgreSQL is up',
        200,
      );
      client = new Client(base);
      expectOutage((await post())!, 'queue_unavailable');
      expect((await call('GET', '/v1/jobs')).status).toBe(200);
      await rds.start();
      await proc.until('Redis back', (e) => e.includes(redisBack));
      await waitFor(async () => (await post())?.status === 201, 20_000, 'a job created once Redis is up', 200);

      await rds.stop('kill');
      await proc.until('the Redis line', () => count(redisGone) >= 2);
      await new Promise((r) => setTimeout(r, 3000)); // ioredis reconnects every second or two meanwhile
      await rds.start();
      await proc.until('Redis back', () => lines().filter((l) => l === redisBack).length >= 2);

      await pgs.stop('fast');
      const jobs = () => fetch(`${base}/v1/jobs`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } }).then((r) => r.status);
      for (let i = 0; i < 3; i++) expect(await jobs()).toBe(503);
      await proc.until('the PostgreSQL line', () => count(pgGone) >= 1);
      await pgs.start();
      await waitFor(async () => (await jobs()) === 200, 20_000, 'GET /v1/jobs once PostgreSQL is back', 200);
      await proc.until('PostgreSQL back', (e) => e.includes(pgBack));

      expect(lines().filter((l) => !pgRetry.test(l))).toEqual([
        expect.stringMatching(redisGone), // at start, once PostgreSQL answered
        redisBack,
        expect.stringMatching(redisGone),
        redisBack,
        expect.stringMatching(pgGone),
        pgBack,
      ]);
    } finally {
      client = new Client(api.url);
      await proc.stop();
      await Promise.all([pgs.start(), rds.start()]);
    }
  }, 60_000);

  it('npm start waits for PostgreSQL with a line per attempt, and stops with one line when it refuses us', async () => {
    await pgs.stop('fast');
    const proc = startProcess('scripts/start.mjs', { ...t.env, PORT: String(await freePort()) });
    try {
      const line = new RegExp(
        `^edgetune: PostgreSQL at 127\\.0\\.0\\.1:${pgs.port} is unreachable \\(ECONNREFUSED\\); retrying in \\d+ s$`,
      );
      await proc.until('two retry lines', (e) => e.split('\n').filter((l) => line.test(l)).length >= 2);
      expect(proc.p.exitCode).toBeNull();
      for (const l of proc.stderr().trim().split('\n')) expect(l).toMatch(line);
    } finally {
      await proc.stop();
      await pgs.start();
    }
    const url = new URL(t.databaseUrl);
    url.username = 'nobody';
    const refused = startProcess('scripts/start.mjs', { ...t.env, DATABASE_URL: url.toString() });
    const code = await new Promise((res) => refused.p.once('exit', res));
    expect(code).toBe(1);
    expect(refused.stderr().trim()).toBe(`edgetune: PostgreSQL at 127.0.0.1:${pgs.port}: role "nobody" does not exist`);
  }, 30_000);

  it('a worker waits for Redis, a line per attempt and no stack traces, then starts', async () => {
    await rds.stop('kill');
    const proc = startProcess('apps/worker/dist/main.js', { ...t.env });
    try {
      const line = new RegExp(`Redis at 127\\.0\\.0\\.1:${rds.port} is unreachable \\(ECONNREFUSED\\); retrying in \\d+ s$`);
      await proc.until('two retry lines', (e) => e.split('\n').filter((l) => line.test(l)).length >= 2);
      expect(proc.p.exitCode).toBeNull();
      expect(
        proc
          .stderr()
          .trim()
          .split('\n')
          .filter((l) => !line.test(l)),
      ).toEqual([]);
      await rds.start();
      await proc.until('the worker to start', (e) => e.includes('base models in'));
      expect(proc.p.exitCode).toBeNull();
    } finally {
      await proc.stop();
      await rds.start();
    }
  }, 30_000);
});
