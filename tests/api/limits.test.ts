// Resource limits at job creation, over HTTP against real PostgreSQL and Redis (no worker): a job whose plan
// exceeds the forecast training time (EDGETUNE_MAX_JOB_SECONDS, default) or checkpoint storage
// (EDGETUNE_MAX_CHECKPOINT_BYTES, set low here) is refused with 422 `job_exceeds_limits` before it is queued,
// on both paths; a time budget brings a long job within the limit.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { fakeModel, Client, createTestEnv, REPO_ROOT, startTestApi, type TestEnv } from '../helpers/service.js';

/** Checkpoint storage limit of this environment: 256 MiB. */
const MAX_CHECKPOINT_BYTES = 256 * 2 ** 20;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let q: Queue;
let redis: Redis;
let train: string;

const line = (i: number) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' });
const jsonl = (n: number) => `${Array.from({ length: n }, (_, i) => line(i)).join('\n')}\n`;
const jobCount = async () => (await c.get('/v1/jobs?limit=100')).body.data.length as number;

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => {
      fakeModel(join(d, 'tiny-llama'));
      // the shipped small model's shape (the API plans from config.json alone)
      mkdirSync(join(d, 'small-llama'));
      copyFileSync(join(REPO_ROOT, 'models', 'edgetune-small-llama', 'config.json'), join(d, 'small-llama', 'config.json'));
      writeFileSync(join(d, 'small-llama', 'model.safetensors'), 'weights');
    },
    env: { EDGETUNE_MAX_CHECKPOINT_BYTES: String(MAX_CHECKPOINT_BYTES), EDGETUNE_MAX_JOB_SECONDS: '' },
  });
  api = await startTestApi(t);
  c = new Client(api.url);
  train = (await c.upload(jsonl(64), 'train.jsonl')).body.id;
  redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  q = new Queue('tuning', { connection: redis, prefix: t.prefix });
});

afterAll(async () => {
  await q?.close();
  redis?.disconnect();
  await api?.stop();
  await t?.destroy();
});

/** A job far past any limit: 256 examples x 1024 accumulation steps per optimizer step, 8 steps, on the small model. */
const longJob = {
  model: 'small-llama',
  training_file: '',
  hyperparameters: { batch_size: 256, gradient_accumulation_steps: 1024, max_steps: 8, max_length: 128 },
  device: { memory_budget_bytes: 64 * 2 ** 30, threads: 2 },
};

describe('forecast training time (EDGETUNE_MAX_JOB_SECONDS, default 24 h)', () => {
  it('refuses a job forecast past the limit before it queues, with the figures, on /v1/jobs and the OpenAI path', async () => {
    const body = { ...longJob, training_file: train };
    const plan = (await c.post('/v1/jobs?dry_run=true', body)).body.plan;
    // the forecast itself is what the limit reads; this job is far beyond a day
    expect(plan.fits).toBe(true);
    const seconds = Math.ceil(plan.forecast.total_ms / 1000);
    expect(seconds).toBeGreaterThan(86_400);
    const before = { jobs: await jobCount(), queued: await q.count() };

    const r = await c.post('/v1/jobs', body);
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body).toMatchObject({ code: 'job_exceeds_limits', param: 'hyperparameters' });
    expect(r.body.limits).toEqual([
      { limit: 'time', variable: 'EDGETUNE_MAX_JOB_SECONDS', needs: seconds, allowed: 86_400, unit: 'seconds' },
    ]);
    expect(r.body.detail).toContain(`(${seconds} s), over the limit of 86400 s (EDGETUNE_MAX_JOB_SECONDS)`);
    expect(r.body.detail).toContain('time_budget_s');

    const o = await c.post('/v1/fine_tuning/jobs', body);
    expect(o.status).toBe(422);
    expect(o.body).toMatchObject({ code: 'job_exceeds_limits', error: { code: 'job_exceeds_limits' } });
    // nothing was created or queued
    expect({ jobs: await jobCount(), queued: await q.count() }).toEqual(before);
  });

  it('accepts the same job under a time budget within the limit (the budget bounds the forecast)', async () => {
    const body = { ...longJob, training_file: train, hyperparameters: { ...longJob.hyperparameters, time_budget_s: 3600 } };
    const r = await c.post('/v1/jobs', body);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.status).toBe('queued');
    expect(r.body.plan.forecast.total_ms).toBeLessThanOrEqual(3_600_000);
    expect((await c.post(`/v1/jobs/${r.body.id}/cancel`)).body.status).toBe('cancelled');
  });
});

describe('forecast checkpoint storage (EDGETUNE_MAX_CHECKPOINT_BYTES)', () => {
  const headJob = (headRank: number) => ({
    model: 'small-llama',
    training_file: train,
    method: { type: 'edge_llm', edge_llm: { head_rank: headRank } },
    hyperparameters: { batch_size: 4, max_steps: 10, max_length: 64 },
    checkpointing: { every_n_steps: 1 },
    device: { memory_budget_bytes: 64 * 2 ** 30, threads: 2 },
  });

  it('refuses a job whose kept checkpoints exceed the limit; the same job with a smaller head passes', async () => {
    const r = await c.post('/v1/jobs', headJob(1024));
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('job_exceeds_limits');
    const [limit] = r.body.limits;
    expect(limit).toMatchObject({ limit: 'checkpoint_storage', variable: 'EDGETUNE_MAX_CHECKPOINT_BYTES', allowed: MAX_CHECKPOINT_BYTES });
    // two checkpoints kept (EDGETUNE_CHECKPOINTS_KEPT) of each exit's low-rank head (1024 x (4096 + 384)) with its
    // AdamW moments: several hundred MiB, not all ten checkpoints the job writes
    const exits = r.body.plan.exit_layers.length;
    const headParams = 1024 * (4096 + 384) + 384;
    expect(limit.needs).toBeGreaterThan(2 * exits * headParams * 12);
    expect(limit.needs).toBeLessThan(3 * exits * headParams * 12);
    expect(r.body.detail).toContain(`(${limit.needs} bytes:`);
    expect(r.body.detail).toContain(`over the limit of ${MAX_CHECKPOINT_BYTES} bytes (EDGETUNE_MAX_CHECKPOINT_BYTES)`);

    const ok = await c.post('/v1/jobs', headJob(8));
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(ok.body.checkpointing).toEqual({ every_n_steps: 1, keep_after_finish: false });
    await c.post(`/v1/jobs/${ok.body.id}/cancel`);
  });

  it('records checkpointing.keep_after_finish', async () => {
    const r = await c.post('/v1/jobs', { ...headJob(8), checkpointing: { every_n_steps: 2, keep_after_finish: true } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.checkpointing).toEqual({ every_n_steps: 2, keep_after_finish: true });
    expect((await c.get(`/v1/jobs/${r.body.id}`)).body.checkpointing.keep_after_finish).toBe(true);
    await c.post(`/v1/jobs/${r.body.id}/cancel`);
  });
});
