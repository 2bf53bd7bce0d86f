// What an API process that dies mid-request leaves behind, against real PostgreSQL and Redis: an
// Idempotency-Key still "in progress" (taken over by a retry once its claim is older than
// EDGETUNE_IDEMPOTENCY_TIMEOUT_MS, while a request that is merely slow keeps renewing its claim; a retry that
// takes over the key of a request that had created its job, or stored its upload, answers that job or file instead
// of creating another; a request creating a project or an API key that loses its claim to a retry rolls its row
// back with the answer it could not store, so only the retry's row stays), and a job
// creation that outlasts the reconciler's grace period for `validating_files` rows (the reconciler fails
// the row as abandoned; the request then answers 503 `api_interrupted` and queues nothing). Slow requests
// are made by holding a PostgreSQL table lock that blocks the request's next insert.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import pg from 'pg';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { QUEUE_NAME, type QueueJobData } from '../../packages/core/src/service/queue.js';
import { redisConnection } from '../../packages/store/src/queue.js';
import { reconcileJobs } from '../../apps/worker/src/reconcile.js';
import { requestHash } from '../../apps/api/src/idempotency.js';
import { fakeModel, Client, createTestEnv, startTestApi, waitFor, type Res, type TestEnv } from '../helpers/service.js';
import { expectOneRan } from '../helpers/idempotency.js';

const TIMEOUT_MS = 2000; // EDGETUNE_IDEMPOTENCY_TIMEOUT_MS of this API: claims are renewed every ~667 ms
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let admin: Client;
let db: PrismaClient;
let redis: Redis;
let queue: Queue<QueueJobData>;
let body: Record<string, unknown>;
/** the key row a POST /v1/jobs with `body` stores (project, method, path, request hash) */
let probe: { projectId: string; method: string; path: string; requestHash: string };

const jsonl = (n: number) =>
  `${Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' })).join(
    '\n',
  )}\n`;

/** Leaves key `key` the way an API that died while running POST /v1/jobs with `body` leaves it: in progress, claimed `ageMs` ago. */
async function abandonedKey(key: string, ageMs: number): Promise<void> {
  await db.$executeRaw`INSERT INTO idempotency_keys (project_id, key, method, path, request_hash, created_at)
    VALUES (${probe.projectId}, ${key}, ${probe.method}, ${probe.path}, ${probe.requestHash}, now() - make_interval(secs => ${ageMs / 1000}::float8))`;
}

/** Holds `LOCK TABLE <table> IN SHARE MODE` (inserts into it wait) until `release`. */
async function lockTable(table: 'jobs' | 'job_events' | 'projects' | 'api_keys'): Promise<{ release: () => Promise<void> }> {
  const c = new pg.Client({ connectionString: t.databaseUrl });
  await c.connect();
  await c.query('BEGIN');
  await c.query(`LOCK TABLE ${table} IN SHARE MODE`);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      try {
        await c.query('COMMIT');
      } finally {
        await c.end();
      }
    },
  };
}

/** How many sessions of this database wait on a lock (e.g. inserts behind {@link lockTable}). */
async function lockWaiters(): Promise<number> {
  const [r] = await db.$queryRaw<
    { n: number }[]
  >`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
  return r.n;
}

const jobCount = () => db.job.count();

function expectProblem(r: Res, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body).toMatchObject({ status, code });
}

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => fakeModel(join(d, 'tiny-llama'), { weights: null }),
    env: { EDGETUNE_IDEMPOTENCY_TIMEOUT_MS: String(TIMEOUT_MS) },
  });
  api = await startTestApi(t);
  admin = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 3 });
  redis = redisConnection(t.redisUrl);
  queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: t.prefix });
  const train = (await admin.upload(jsonl(40), 'train.jsonl')).body.id;
  body = { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } };
  expect((await admin.post('/v1/jobs', body, { 'idempotency-key': 'probe' })).status).toBe(201);
  const row = await db.idempotencyKey.findFirstOrThrow({ where: { key: 'probe' } });
  probe = { projectId: row.projectId, method: row.method, path: row.path, requestHash: row.requestHash };
});

afterAll(async () => {
  await api?.stop();
  await queue?.close();
  redis?.disconnect();
  await db?.$disconnect();
  await t?.destroy();
});

describe('an Idempotency-Key left in progress by a dead API', () => {
  it('answers 409 idempotency_key_in_use (with Retry-After) within the timeout, and is taken over by a retry after it', async () => {
    await abandonedKey('crashed-1', 0);
    const early = await admin.post('/v1/jobs', body, { 'idempotency-key': 'crashed-1' });
    expectProblem(early, 409, 'idempotency_key_in_use');
    expect(Number(early.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(early.headers.get('retry-after'))).toBeLessThanOrEqual(TIMEOUT_MS / 1000);
    // a different request under the key is still refused as reused, whatever the key's state
    expectProblem(await admin.post('/v1/jobs', { ...body, seed: 7 }, { 'idempotency-key': 'crashed-1' }), 409, 'idempotency_key_reused');

    await db.$executeRaw`UPDATE idempotency_keys SET created_at = now() - interval '1 hour' WHERE key = 'crashed-1'`;
    const before = await jobCount();
    const taken = await admin.post('/v1/jobs', body, { 'idempotency-key': 'crashed-1' });
    expect(taken.status, JSON.stringify(taken.body)).toBe(201);
    expect(taken.headers.get('idempotent-replayed')).toBeNull();
    expect(taken.body).toMatchObject({ object: 'fine_tuning.job', status: 'queued' });
    expect(await jobCount()).toBe(before + 1);
    // the key now holds the retry's answer
    const replay = await admin.post('/v1/jobs', body, { 'idempotency-key': 'crashed-1' });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(taken.body.id);
  });

  it('retries racing for an abandoned key: one takes it over, the job is created once', async () => {
    await abandonedKey('crashed-2', 3_600_000);
    const before = await jobCount();
    const rs = await Promise.all(Array.from({ length: 4 }, () => admin.post('/v1/jobs', body, { 'idempotency-key': 'crashed-2' })));
    expectOneRan(rs);
    expect(await jobCount()).toBe(before + 1);
  });

  it('a request that runs longer than the timeout renews its claim: a retry meanwhile gets 409, and the answer is stored', async () => {
    const lock = await lockTable('jobs');
    let first: Promise<Res>;
    let retry: Promise<Res> | undefined;
    try {
      first = admin.post('/v1/jobs', body, { 'idempotency-key': 'slow-1' });
      await waitFor(() => db.idempotencyKey.findFirst({ where: { key: 'slow-1' } }), 5000, 'the key claimed');
      await new Promise((r) => setTimeout(r, 2.5 * TIMEOUT_MS)); // the request waits on the lock
      retry = admin.post('/v1/jobs', body, { 'idempotency-key': 'slow-1' });
      // a retry that took the key over would wait on the lock as well
      const r = await Promise.race([retry, new Promise<null>((res) => setTimeout(() => res(null), 3000))]);
      expect(r, 'the retry took the key over').not.toBeNull();
      expectProblem(r!, 409, 'idempotency_key_in_use');
    } finally {
      await lock.release();
      await retry;
    }
    const a = await first;
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    const b = await admin.post('/v1/jobs', body, { 'idempotency-key': 'slow-1' });
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(b.body.id).toBe(a.body.id);
  });
});

describe('projects and API keys: the row and the stored answer commit together', () => {
  const cases = [
    {
      what: 'project',
      table: 'projects' as const,
      post: (name: string, key: string) => admin.post('/v1/projects', { name }, { 'idempotency-key': key }),
      ids: async (name: string) => (await db.project.findMany({ where: { name } })).map((p) => p.id),
    },
    {
      what: 'API key',
      table: 'api_keys' as const,
      post: (name: string, key: string) => admin.post(`/v1/projects/${probe.projectId}/keys`, { name }, { 'idempotency-key': key }),
      ids: async (name: string) => (await db.apiKey.findMany({ where: { name } })).map((k) => k.id),
    },
  ];

  it.each(cases)(
    "a request whose claim is taken over while it inserts its $what rolls it back and answers 409; the retry's row stays",
    async ({ table, post, ids }) => {
      const name = `taken-over-${table}`,
        key = `taken-over-${table}`;
      await admin.get('/v1/projects'); // the auth hook's last_used_at write (due once a minute) must not wait on the lock below
      const lock = await lockTable(table);
      let first: Promise<Res> | undefined, retry: Promise<Res> | undefined;
      try {
        first = post(name, key);
        await waitFor(
          async () => (await lockWaiters()) >= 1 && db.idempotencyKey.findFirst({ where: { key } }),
          5000,
          'the insert waiting on the lock',
        );
        // as if its renewals had stalled past the timeout: a retry takes the key over
        await db.$executeRaw`UPDATE idempotency_keys SET created_at = now() - interval '1 hour' WHERE key = ${key}`;
        retry = post(name, key);
        await waitFor(async () => (await lockWaiters()) >= 2, 5000, 'the retry taking the key over and waiting on the lock');
      } finally {
        await lock.release();
      }
      const [a, b] = await Promise.all([first, retry]);
      expectProblem(a!, 409, 'idempotency_key_in_use');
      expect(b!.status, JSON.stringify(b!.body)).toBe(201);
      expect(b!.headers.get('idempotent-replayed')).toBeNull();
      expect(await ids(name)).toEqual([b!.body.id]);
      const again = await post(name, key);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body).toEqual(b!.body);
    },
  );

  it('POST /v1/projects retried after its API died: the retries that race for the key create the project once', async () => {
    const name = 'died-project',
      key = 'died-project';
    // what a dead request leaves: the key in progress, its transaction (project row) never committed
    await db.$executeRaw`INSERT INTO idempotency_keys (project_id, key, method, path, request_hash, created_at)
      VALUES (${probe.projectId}, ${key}, 'POST', '/v1/projects', ${requestHash({ name })}, now() - interval '1 hour')`;
    const rs = await Promise.all(Array.from({ length: 3 }, () => cases[0].post(name, key)));
    const ran = expectOneRan(rs);
    expect(await cases[0].ids(name)).toEqual([ran.body.id]);
    const replay = await cases[0].post(name, key);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(ran.body.id);
    expect(await cases[0].ids(name)).toHaveLength(1);
  });
});

/** Leaves key `key`, whose request created a job, the way an API that died before storing the answer leaves it. */
async function unanswered(key: string): Promise<void> {
  await db.$executeRaw`UPDATE idempotency_keys SET status = NULL, body = NULL, created_at = now() - interval '1 hour' WHERE key = ${key}`;
}

describe('a retry that takes over the key of a request that created its job and died', () => {
  it('answers the job that request queued: no second job', async () => {
    const first = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-queued' });
    expect(first.status).toBe(201);
    await unanswered('died-queued');
    const before = await jobCount();
    const retry = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-queued' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(retry.body).toMatchObject({ id: first.body.id, status: 'queued' });
    expect(await jobCount()).toBe(before);
    // the key now holds the retry's answer
    expect((await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-queued' })).headers.get('idempotent-replayed')).toBe('true');
  });

  it('finishes accepting a job that request left in validating_files: queued and in the queue', async () => {
    const first = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-validating' });
    const id = first.body.id as string;
    await db.job.update({ where: { id }, data: { status: 'validating_files' } });
    await queue.remove(id);
    expect(await queue.getJob(id)).toBeUndefined();
    await unanswered('died-validating');
    const before = await jobCount();
    const retry = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-validating' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.body).toMatchObject({ id, status: 'queued' });
    expect(await jobCount()).toBe(before);
    expect(await queue.getJob(id)).toBeDefined();
  });

  it('creates the job afresh when the reconciler failed the first one (api_interrupted)', async () => {
    const first = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-interrupted' });
    const id = first.body.id as string;
    await queue.remove(id);
    await db.job.update({
      where: { id },
      data: { status: 'failed', error: { code: 'api_interrupted', message: 'abandoned', param: null }, finishedAt: new Date() },
    });
    await unanswered('died-interrupted');
    const before = await jobCount();
    const retry = await admin.post('/v1/jobs', body, { 'idempotency-key': 'died-interrupted' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.body.id).not.toBe(id);
    expect(retry.body.status).toBe('queued');
    expect(await jobCount()).toBe(before + 1);
    expect((await db.job.findUniqueOrThrow({ where: { id } })).idempotencyKey).toBeNull();
    expect((await db.job.findUniqueOrThrow({ where: { id: retry.body.id } })).idempotencyKey).toBe('died-interrupted');
  });
});

describe('an upload retried after its API died having stored the file', () => {
  it('answers the stored file: no second copy', async () => {
    const data = jsonl(12);
    const first = await admin.upload(data, 'retried.jsonl', 'fine-tune', { 'idempotency-key': 'upload-died' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    await unanswered('upload-died');
    const files = await db.file.count(),
      blobs = await db.blob.count();
    const retry = await admin.upload(data, 'retried.jsonl', 'fine-tune', { 'idempotency-key': 'upload-died' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(retry.body).toEqual(first.body);
    expect(await db.file.count()).toBe(files);
    expect(await db.blob.count()).toBe(blobs);
  });
});

describe('a key used again after its request answered 503 queue_unavailable', () => {
  it('creates the job afresh (the failed job keeps no key)', async () => {
    const first = await admin.post('/v1/jobs', body, { 'idempotency-key': 'redis-down' });
    const id = first.body.id as string;
    // what createJob leaves when Redis refuses the job: the row failed, the key released with the 503
    await queue.remove(id);
    await db.job.update({
      where: { id },
      data: {
        status: 'failed',
        error: { code: 'queue_unavailable', message: 'The job queue (Redis) is unavailable', param: null },
        finishedAt: new Date(),
      },
    });
    await db.idempotencyKey.delete({ where: { projectId_key: { projectId: probe.projectId, key: 'redis-down' } } });
    const retry = await admin.post('/v1/jobs', body, { 'idempotency-key': 'redis-down' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.body.id).not.toBe(id);
    expect(retry.body.status).toBe('queued');
    expect((await db.job.findUniqueOrThrow({ where: { id } })).idempotencyKey).toBeNull();
  });
});

describe("a job creation that outlasts the reconciler's grace for validating_files", () => {
  it('the reconciler fails the row (api_interrupted); the request answers 503 api_interrupted and queues nothing', async () => {
    const lock = await lockTable('job_events'); // the request stops after writing its `validating_files` row
    let created: Promise<Res>;
    let reconciled: ReturnType<typeof reconcileJobs>;
    let id: string;
    try {
      const known = new Set((await db.job.findMany({ select: { id: true } })).map((j) => j.id));
      created = admin.post('/v1/jobs', body);
      id = (
        await waitFor(
          async () => (await db.job.findMany({ where: { status: 'validating_files' } })).find((j) => !known.has(j.id)),
          5000,
          'the job row',
        )
      ).id;
      reconciled = reconcileJobs({ db, queue, redis, prefix: t.prefix }, { validatingGraceMs: 0 });
      await waitFor(async () => (await db.job.findUnique({ where: { id } }))?.status === 'failed', 5000, 'the row failed');
    } finally {
      await lock.release();
    }
    expect(await reconciled).toEqual([{ jobId: id, from: 'validating_files', queueState: 'missing', to: 'failed' }]);
    const r = await created;
    expectProblem(r, 503, 'api_interrupted');
    expect(r.headers.get('retry-after')).toBe('1');
    const job = await admin.get(`/v1/jobs/${id}`);
    expect(job.body).toMatchObject({ status: 'failed', error: { code: 'api_interrupted' } });
    expect(await queue.getJob(id)).toBeUndefined();
    const statuses = (await db.jobEvent.findMany({ where: { jobId: id, type: 'status' }, orderBy: { seq: 'asc' } })).map(
      (e) => (e.data as { status: string }).status,
    );
    expect(statuses).not.toContain('queued');
    expect(statuses).toContain('failed');
  });
});
