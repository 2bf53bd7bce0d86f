// Deleting jobs and files over HTTP against real PostgreSQL and Redis (no worker): a finished job goes with
// its events, checkpoints and adapters and their blobs; one not finished answers 409 `job_not_finished`; a
// file in use by a job not finished answers 409 `file_in_use`; another project's ids answer 404; a blob that
// another row still references is kept.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { putBlob } from '../../packages/store/src/blobs.js';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { fakeModel, Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let db: PrismaClient;
let c: Client;
let other: Client; // a second project's key

const line = (i: number) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' });
const jsonl = (n: number) => `${Array.from({ length: n }, (_, i) => line(i)).join('\n')}\n`;
const jobBody = (file: string) => ({ model: 'tiny-llama', training_file: file, hyperparameters: { max_steps: 8, batch_size: 4 } });
const blobCount = async () => ({ blobs: await db.blob.count(), chunks: await db.blobChunk.count() });

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  api = await startTestApi(t);
  db = createPrisma(t.databaseUrl, { max: 2 });
  c = new Client(api.url);
  const p = await c.post('/v1/projects', { name: 'team-b' });
  other = c.withKey((await c.post(`/v1/projects/${p.body.id}/keys`, { name: 'ci' })).body.secret);
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

/** Gives job `id` `n` checkpoints and a PEFT adapter, each with a blob of its own (as a worker stores them). */
async function addArtifacts(id: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 1; i <= n; i++) {
    const b = await putBlob(db, Buffer.alloc(1000 + i, i), 'application/x-tar');
    await db.checkpoint.create({ data: { id: `checkpoint-${id}-${i}`, jobId: id, step: i, metrics: {}, blobId: b.id } });
    ids.push(b.id);
  }
  const a = await putBlob(db, Buffer.alloc(2000, 7), 'application/x-tar');
  await db.adapter.create({
    data: { id: `adapter-${id}`, jobId: id, format: 'peft', blobId: a.id, sha256: a.sha256, size: BigInt(a.size) },
  });
  return [...ids, a.id];
}

describe('DELETE /v1/jobs/{id}', () => {
  it('refuses a job that is not finished (409 job_not_finished), then deletes it once cancelled, with its rows and blobs', async () => {
    const file = (await c.upload(jsonl(16))).body.id;
    // kept after it ends, so that its checkpoints are still there to delete
    const job = (await c.post('/v1/jobs', { ...jobBody(file), checkpointing: { keep_after_finish: true } })).body;
    expect(job.status).toBe('queued');
    const blobs = await addArtifacts(job.id, 3);

    const busy = await c.delete(`/v1/jobs/${job.id}`);
    expect(busy.status).toBe(409);
    expect(busy.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(busy.body).toMatchObject({ code: 'job_not_finished', param: 'id' });
    expect(busy.body.detail).toContain(`/v1/jobs/${job.id}/cancel`);

    expect((await c.post(`/v1/jobs/${job.id}/cancel`)).body.status).toBe('cancelled');
    expect(await db.checkpoint.count({ where: { jobId: job.id } })).toBe(3);
    const before = await blobCount();
    // another project cannot see it, let alone delete it
    expect((await other.delete(`/v1/jobs/${job.id}`)).status).toBe(404);
    expect((await c.get(`/v1/jobs/${job.id}`)).status).toBe(200);

    const r = await c.delete(`/v1/jobs/${job.id}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toEqual({ id: job.id, object: 'fine_tuning.job', deleted: true });
    expect((await c.get(`/v1/jobs/${job.id}`)).status).toBe(404);
    expect((await c.delete(`/v1/jobs/${job.id}`)).status).toBe(404);
    expect(await db.jobEvent.count({ where: { jobId: job.id } })).toBe(0);
    expect(await db.checkpoint.count({ where: { jobId: job.id } })).toBe(0);
    expect(await db.blob.count({ where: { id: { in: blobs } } })).toBe(0);
    const after = await blobCount();
    expect(after.blobs).toBe(before.blobs - 4);
    expect(after.chunks).toBe(before.chunks - 4);
    // its training file is not the job's to free
    expect((await c.bytes(`/v1/files/${file}/content`)).data.toString()).toBe(jsonl(16));
  });

  it('cancelling a queued job that holds checkpoints (re-queued to resume) deletes them and their blobs unless kept', async () => {
    const file = (await c.upload(jsonl(10))).body.id;
    const job = (await c.post('/v1/jobs', jobBody(file))).body;
    const blobs = await addArtifacts(job.id, 2);
    expect((await c.post(`/v1/jobs/${job.id}/cancel`)).body).toMatchObject({ status: 'cancelled', checkpoints: { count: 0 } });
    expect(await db.blob.count({ where: { id: { in: blobs } } })).toBe(1); // the adapter's, until the job is deleted
    expect((await c.delete(`/v1/jobs/${job.id}`)).status).toBe(200);
    expect(await db.blob.count({ where: { id: { in: blobs } } })).toBe(0);
  });

  it('keeps a blob that another row still references', async () => {
    const file = (await c.upload(jsonl(12))).body;
    const job = (await c.post('/v1/jobs', { ...jobBody(file.id), checkpointing: { keep_after_finish: true } })).body;
    await c.post(`/v1/jobs/${job.id}/cancel`);
    const fileRow = await db.file.findUniqueOrThrow({ where: { id: file.id } });
    await db.checkpoint.create({
      data: { id: `checkpoint-shared-${job.id}`, jobId: job.id, step: 1, metrics: {}, blobId: fileRow.blobId },
    });

    expect((await c.delete(`/v1/jobs/${job.id}`)).status).toBe(200);
    expect(await db.blob.count({ where: { id: fileRow.blobId } })).toBe(1);
    expect((await c.bytes(`/v1/files/${file.id}/content`)).data.toString()).toBe(jsonl(12));
  });

  it('is on the OpenAI path too', async () => {
    const file = (await c.upload(jsonl(8))).body.id;
    const job = (await c.post('/v1/fine_tuning/jobs', jobBody(file))).body;
    expect((await c.delete(`/v1/fine_tuning/jobs/${job.id}`)).body).toMatchObject({
      code: 'job_not_finished',
      error: { code: 'job_not_finished' },
    });
    await c.post(`/v1/fine_tuning/jobs/${job.id}/cancel`);
    expect((await c.delete(`/v1/fine_tuning/jobs/${job.id}`)).body).toEqual({ id: job.id, object: 'fine_tuning.job', deleted: true });
  });
});

describe('DELETE /v1/files/{id}', () => {
  it('refuses a file a job not finished uses (409 file_in_use), then deletes it and frees its blob', async () => {
    const file = (await c.upload(jsonl(20))).body.id;
    const { blobId } = await db.file.findUniqueOrThrow({ where: { id: file } });
    const job = (await c.post('/v1/jobs', jobBody(file))).body;

    const busy = await c.delete(`/v1/files/${file}`);
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ code: 'file_in_use', param: 'id' });
    expect(busy.body.detail).toContain(job.id);

    await c.post(`/v1/jobs/${job.id}/cancel`);
    expect((await other.delete(`/v1/files/${file}`)).status).toBe(404);
    const r = await c.delete(`/v1/files/${file}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ id: file, object: 'file', deleted: true });
    expect(await db.blob.count({ where: { id: blobId } })).toBe(0);
    expect(await db.blobChunk.count({ where: { blobId } })).toBe(0);
    expect((await c.get(`/v1/files/${file}`)).status).toBe(404);
  });
});
