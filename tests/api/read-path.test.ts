// The read path over HTTP against real PostgreSQL and Redis: API keys come from a cache of about a second (a key
// revoked in the database, as by another API process, stops working within it; one revoked through this API at
// once), and `GET /v1/jobs/{id}` is one database round trip, counted at the pg driver under the in-process API.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import pg from 'pg';
import { createPrisma, putBlob, type PrismaClient } from '../../packages/store/src/index.js';
import { ApiKeyCache } from '../../apps/api/src/keys.js';
import { findJob, renderJob } from '../../apps/api/src/services/jobs.js';
import { fakeModel, Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let db: PrismaClient;
let admin: Client;
let projectId: string;
let JOB = '';

/** SQL text of every statement the pg driver sends from this process while `fn` runs. */
async function statementsDuring(fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const q = args[0] as string | { text?: string };
    seen.push(typeof q === 'string' ? q : (q?.text ?? ''));
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await fn();
  } finally {
    pg.Client.prototype.query = query;
  }
  return seen;
}

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  api = await startTestApi(t);
  db = createPrisma(t.databaseUrl, { max: 2 });
  admin = new Client(api.url);
  const file = await admin.upload(`${JSON.stringify({ prompt: 'a', completion: ' b' })}\n`);
  projectId = (await db.file.findUniqueOrThrow({ where: { id: file.body.id } })).projectId;
  const created = await admin.post('/v1/jobs', {
    model: 'tiny-llama',
    training_file: file.body.id,
    seed: 7,
    metadata: { team: 'x' },
    method: { type: 'lora' },
    hyperparameters: { n_epochs: 1, batch_size: 1 },
  });
  expect(created.status, created.text).toBe(201);
  JOB = created.body.id;
  // as a worker leaves a finished job: steps, tokens, checkpoints, adapters
  await db.job.update({
    where: { id: JOB },
    data: { status: 'succeeded', step: 15, trainedTokens: 1234n, startedAt: new Date(Date.now() - 60_000), finishedAt: new Date() },
  });
  for (const step of [5, 10, 15]) {
    const blob = await putBlob(db, Buffer.from(`checkpoint ${step}`), 'application/octet-stream');
    await db.checkpoint.create({ data: { id: `ckpt-${step}`, jobId: JOB, step, blobId: blob.id, metrics: { loss: 2 - step / 10 } } });
  }
  for (const format of ['peft', 'bundle']) {
    const blob = await putBlob(db, Buffer.from(format), 'application/octet-stream');
    await db.adapter.create({ data: { id: `adapter-${format}`, jobId: JOB, format, blobId: blob.id, sha256: blob.sha256, size: 4n } });
  }
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

describe('GET /v1/jobs/{id}', () => {
  it('answers what the row, its checkpoints and adapters say', async () => {
    const r = await admin.get(`/v1/jobs/${JOB}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(await renderJob(db, await findJob(db, projectId, JOB)));
    expect(r.body).toMatchObject({
      id: JOB,
      status: 'succeeded',
      trained_tokens: 1234,
      progress: { step: 15 },
      metadata: { team: 'x' },
      checkpoints: { count: 3, latest_id: 'ckpt-15' },
      result_files: ['bundle', 'peft'],
    });
    expect((await admin.get('/v1/jobs?limit=5')).body.data).toEqual([r.body]);
  });

  it('is one database round trip once the key is cached', async () => {
    await admin.get(`/v1/jobs/${JOB}`); // caches the key (and records its last use)
    const n = 20;
    const started = Date.now();
    const sql = await statementsDuring(async () => {
      for (let i = 0; i < n; i++) expect((await admin.get(`/v1/jobs/${JOB}`)).status).toBe(200);
    });
    const elapsedS = (Date.now() - started) / 1000;
    const jobReads = sql.filter((q) => /\bjobs\b|checkpoints|adapters/.test(q));
    const keyReads = sql.filter((q) => /api_keys/.test(q));
    expect(jobReads).toHaveLength(n);
    // a key is read again only once its cache entry (about a second) has expired
    expect(keyReads.length).toBeLessThanOrEqual(Math.ceil(elapsedS) + 1);
    expect(sql).toHaveLength(jobReads.length + keyReads.length);
  });
});

describe('API key cache', () => {
  it('a key revoked in the database stops working within a second; one revoked through the API at once', async () => {
    const project = (await admin.get('/v1/projects')).body.data[0].id;
    const k = await admin.post(`/v1/projects/${project}/keys`, { name: 'elsewhere' });
    const user = admin.withKey(k.body.secret);
    expect((await user.get(`/v1/jobs/${JOB}`)).status).toBe(200);
    await db.apiKey.update({ where: { id: k.body.id }, data: { revokedAt: new Date() } }); // another API process
    await new Promise((r) => setTimeout(r, 1100));
    expect((await user.get(`/v1/jobs/${JOB}`)).status).toBe(401);

    const k2 = await admin.post(`/v1/projects/${project}/keys`, { name: 'here' });
    const user2 = admin.withKey(k2.body.secret);
    expect((await user2.get(`/v1/jobs/${JOB}`)).status).toBe(200);
    expect((await admin.delete(`/v1/projects/${project}/keys/${k2.body.id}`)).status).toBe(200);
    expect((await user2.get(`/v1/jobs/${JOB}`)).status).toBe(401);
  });

  it('keeps an entry for its TTL and at most maxEntries entries', () => {
    const c = new ApiKeyCache(1000, 2);
    const key = (id: string) => ({ id, projectId: 'p', admin: false, operator: false, lastUsedAt: null });
    c.set('a', key('a'), 0);
    expect(c.get('a', 999)?.id).toBe('a');
    expect(c.get('a', 1000)).toBeUndefined();
    c.set('a', key('a'), 0);
    c.set('b', key('b'), 0);
    c.set('c', key('c'), 0);
    expect([c.get('a', 1), c.get('b', 1)?.id, c.get('c', 1)?.id]).toEqual([undefined, 'b', 'c']);
  });
});
