// Idempotency-Key retention, against real PostgreSQL and Redis: an answer older than
// EDGETUNE_IDEMPOTENCY_RETENTION_MS (24 h here, the default) is forgotten, so the key is new (the request runs
// again, even a different one), and the job or file created under it no longer records the key (a request
// reusing it creates its own). The sweep deletes expired answers, and only those, at API startup and
// periodically. Keys are aged by moving their created_at (the request's last claim) back.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { IDEMPOTENCY_RETENTION_MS, sweepIdempotencyKeys } from '../../apps/api/src/idempotency.js';
import { fakeModel, Client, createTestEnv, startTestApi, waitFor, type TestEnv } from '../helpers/service.js';
import { expectOneRan } from '../helpers/idempotency.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let admin: Client;
let db: PrismaClient;
let body: Record<string, unknown>;
/** the admin key's project */
let projectId: string;

const jsonl = (n: number, tag = '') =>
  `${Array.from({ length: n }, (_, i) =>
    JSON.stringify({ prompt: `message ${i}${tag}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' }),
  ).join('\n')}\n`;

/** Moves the admin project's key `key`'s last claim back by `hours` (past the 24 h retention for 25). */
async function age(key: string, hours = 25): Promise<void> {
  const n =
    await db.$executeRaw`UPDATE idempotency_keys SET created_at = created_at - make_interval(hours => ${hours}::int) WHERE project_id = ${projectId} AND key = ${key}`;
  expect(n).toBe(1);
}

/** Inserts a key row: completed (status 201) or in progress (status null), last claimed `hoursAgo` hours ago. */
async function keyRow(project: string, key: string, hoursAgo: number, completed = true): Promise<void> {
  await db.$executeRaw`INSERT INTO idempotency_keys (project_id, key, method, path, request_hash, status, body, created_at)
    VALUES (${project}, ${key}, 'POST', '/v1/jobs', 'h', ${completed ? 201 : null}::int, ${completed ? '{"id":"x"}' : null}::jsonb,
      now() - make_interval(secs => ${hoursAgo * 3600}::float8))`;
}

const keysOf = async (project: string) =>
  (await db.idempotencyKey.findMany({ where: { projectId: project }, select: { key: true } })).map((k) => k.key).sort();

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama'), { weights: null }) });
  api = await startTestApi(t);
  admin = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 3 });
  projectId = (await db.apiKey.findFirstOrThrow()).projectId;
  const train = (await admin.upload(jsonl(40), 'train.jsonl')).body.id;
  body = { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } };
});

afterAll(async () => {
  await api?.stop();
  await db?.$disconnect();
  await t?.destroy();
});

describe('a completed key older than the retention', () => {
  it('is not replayed: the same request runs again, and a different request under the key is accepted', async () => {
    const first = await admin.post('/v1/projects', { name: 'retained' }, { 'idempotency-key': 'exp-project' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    // within the retention: replayed, and a different request is refused
    const replay = await admin.post('/v1/projects', { name: 'retained' }, { 'idempotency-key': 'exp-project' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(first.body.id);
    expect((await admin.post('/v1/projects', { name: 'other' }, { 'idempotency-key': 'exp-project' })).body.code).toBe(
      'idempotency_key_reused',
    );

    await age('exp-project');
    const again = await admin.post('/v1/projects', { name: 'retained' }, { 'idempotency-key': 'exp-project' });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    expect(await db.project.count({ where: { name: 'retained' } })).toBe(2);
    // the key now holds the new answer
    const replay2 = await admin.post('/v1/projects', { name: 'retained' }, { 'idempotency-key': 'exp-project' });
    expect(replay2.headers.get('idempotent-replayed')).toBe('true');
    expect(replay2.body.id).toBe(again.body.id);

    await age('exp-project');
    const other = await admin.post('/v1/projects', { name: 'other' }, { 'idempotency-key': 'exp-project' });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.body).toMatchObject({ name: 'other' });
  });

  it('an expired API key answer (it holds the secret) is deleted when the key is used again', async () => {
    const first = await admin.post(`/v1/projects/${projectId}/keys`, { name: 'ci' }, { 'idempotency-key': 'exp-apikey' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const stored = () => db.idempotencyKey.findUniqueOrThrow({ where: { projectId_key: { projectId, key: 'exp-apikey' } } });
    const secret = first.body.secret as string;
    expect(secret).toMatch(/^et-/);
    expect(JSON.stringify((await stored()).body)).toContain(secret);
    await age('exp-apikey');
    const again = await admin.post(`/v1/projects/${projectId}/keys`, { name: 'ci' }, { 'idempotency-key': 'exp-apikey' });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    expect(JSON.stringify((await stored()).body)).not.toContain(secret);
  });

  it('a job created under it no longer records the key: reusing the key creates a new job', async () => {
    const first = await admin.post('/v1/jobs', body, { 'idempotency-key': 'exp-job' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const old = await db.job.findUniqueOrThrow({ where: { id: first.body.id } });
    expect(old.idempotencyKey).toBe('exp-job');
    await age('exp-job');
    const before = await db.job.count();
    const again = await admin.post('/v1/jobs', body, { 'idempotency-key': 'exp-job' });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    expect(again.body.status).toBe('queued');
    expect(await db.job.count()).toBe(before + 1);
    const cleared = await db.job.findUniqueOrThrow({ where: { id: first.body.id } });
    expect(cleared.idempotencyKey).toBeNull();
    expect(cleared.updatedAt).toEqual(old.updatedAt); // not a change of the job (the reconciler's grace periods read it)
    expect((await db.job.findUniqueOrThrow({ where: { id: again.body.id } })).idempotencyKey).toBe('exp-job');
    const replay = await admin.post('/v1/jobs', body, { 'idempotency-key': 'exp-job' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(again.body.id);
  });

  it('requests racing for an expired key: one runs, the job is created once', async () => {
    expect((await admin.post('/v1/jobs', body, { 'idempotency-key': 'exp-race' })).status).toBe(201);
    await age('exp-race');
    const before = await db.job.count();
    const rs = await Promise.all(Array.from({ length: 4 }, () => admin.post('/v1/jobs', body, { 'idempotency-key': 'exp-race' })));
    expectOneRan(rs);
    expect(await db.job.count()).toBe(before + 1);
  });

  it('a file uploaded under it no longer records the key: reusing the key stores a new file', async () => {
    const data = jsonl(12, ' upload');
    const first = await admin.upload(data, 'again.jsonl', 'fine-tune', { 'idempotency-key': 'exp-file' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    await age('exp-file');
    const again = await admin.upload(data, 'again.jsonl', 'fine-tune', { 'idempotency-key': 'exp-file' });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    expect((await db.file.findUniqueOrThrow({ where: { id: first.body.id } })).idempotencyKey).toBeNull();
    expect((await db.file.findUniqueOrThrow({ where: { id: again.body.id } })).idempotencyKey).toBe('exp-file');
  });
});

describe('sweepIdempotencyKeys', () => {
  it('deletes the expired answers and abandoned claims and clears their keys from jobs and files; keeps fresh answers and live claims', async () => {
    // another project's job under the same key string (its answer fresh) keeps the key
    const p2 = (await admin.post('/v1/projects', { name: 'sweep-other' })).body.id as string;
    const other = admin.withKey((await admin.post(`/v1/projects/${p2}/keys`, { name: 'p2' })).body.secret);
    const otherTrain = (await other.upload(jsonl(40), 'train.jsonl')).body.id;
    const otherJob = await other.post('/v1/jobs', { ...body, training_file: otherTrain }, { 'idempotency-key': 'sw-expired' });
    expect(otherJob.status, JSON.stringify(otherJob.body)).toBe(201);
    const job = await admin.post('/v1/jobs', body, { 'idempotency-key': 'sw-expired' });
    const file = await admin.upload(jsonl(5, ' sweep'), 'sweep.jsonl', 'fine-tune', { 'idempotency-key': 'sw-file' });
    expect([job.status, file.status]).toEqual([201, 201]);
    await age('sw-expired');
    await age('sw-file');
    await keyRow(projectId, 'sw-fresh', 23);
    await keyRow(projectId, 'sw-running-old', 48, false); // in progress, its claim not renewed for 2 days: abandoned
    await keyRow(projectId, 'sw-running-stale', 23, false); // abandoned too, but not yet past the retention
    await keyRow(projectId, 'sw-running', 0, false);
    const mine = (await keysOf(projectId)).filter((k) => !k.startsWith('sw-'));

    expect(await sweepIdempotencyKeys(db, IDEMPOTENCY_RETENTION_MS)).toBe(3);
    expect(await keysOf(projectId)).toEqual([...mine, 'sw-fresh', 'sw-running', 'sw-running-stale'].sort());
    expect(await keysOf(p2)).toEqual(['sw-expired']);
    expect((await db.job.findUniqueOrThrow({ where: { id: job.body.id } })).idempotencyKey).toBeNull();
    expect((await db.file.findUniqueOrThrow({ where: { id: file.body.id } })).idempotencyKey).toBeNull();
    expect((await db.job.findUniqueOrThrow({ where: { id: otherJob.body.id } })).idempotencyKey).toBe('sw-expired');
    expect(await sweepIdempotencyKeys(db, IDEMPOTENCY_RETENTION_MS)).toBe(0);
    // counted from `now`: a day later the fresh answer has expired too
    expect(await sweepIdempotencyKeys(db, IDEMPOTENCY_RETENTION_MS, { now: Date.now() + IDEMPOTENCY_RETENTION_MS })).toBeGreaterThanOrEqual(
      2,
    );
    expect(await keysOf(projectId)).toEqual([]);
    // a claim younger than the takeover timeout is never swept, even with a shorter retention (its request may be alive)
    await keyRow(projectId, 'sw-live', 30 / 3600, false);
    expect(await sweepIdempotencyKeys(db, 10_000, { timeoutMs: 60_000 })).toBe(0);
    expect(await sweepIdempotencyKeys(db, 10_000, { timeoutMs: 20_000 })).toBe(1);
  });

  it('deletes a backlog larger than one batch', async () => {
    await db.$executeRaw`INSERT INTO idempotency_keys (project_id, key, method, path, request_hash, status, body, created_at)
      SELECT ${projectId}, 'backlog-' || i, 'POST', '/v1/jobs', 'h', 201, '{}'::jsonb, now() - interval '30 days' - make_interval(secs => i)
      FROM generate_series(1, 2500) AS i`;
    expect(await sweepIdempotencyKeys(db, IDEMPOTENCY_RETENTION_MS)).toBe(2500);
    expect(await db.idempotencyKey.count({ where: { key: { startsWith: 'backlog-' } } })).toBe(0);
  });

  it('the API sweeps at startup and periodically (EDGETUNE_IDEMPOTENCY_RETENTION_MS)', async () => {
    await keyRow(projectId, 'startup-expired', 0.01); // 36 s old: past a 30 s retention
    await keyRow(projectId, 'startup-running', 0, false);
    const { startApi } = await import('../../apps/api/src/server.js');
    const second = await startApi({ ...t.env, EDGETUNE_IDEMPOTENCY_RETENTION_MS: '30000' }, { logger: false });
    try {
      await waitFor(async () => !(await db.idempotencyKey.findFirst({ where: { key: 'startup-expired' } })), 5000, 'the startup sweep');
      // the next sweeps (every 7.5 s) take a row once it is older than 30 s
      await keyRow(projectId, 'periodic-expired', 25 / 3600);
      await waitFor(async () => !(await db.idempotencyKey.findFirst({ where: { key: 'periodic-expired' } })), 20_000, 'a periodic sweep');
      expect(await db.idempotencyKey.findFirst({ where: { key: 'startup-running' } })).not.toBeNull();
    } finally {
      await second.stop();
    }
  });
});
