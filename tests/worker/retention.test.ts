// Resource limits in a running job, with a real worker against real PostgreSQL and Redis on the tiny model:
// a diverging run (activations that overflow float32) ends `failed` with `training_diverged`; a job keeps only its latest
// EDGETUNE_CHECKPOINTS_KEPT checkpoints and the best on validation while it runs, and none once it ends unless
// it asked `checkpointing.keep_after_finish`; no blob is left behind; a checkpoint's size is what the API's
// limit forecasts (checkpointBytesOf).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { readSafetensors, writeSafetensors } from '../../packages/engine/src/io/safetensors.js';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { checkpointBytesOf } from '../../packages/core/src/service/limits.js';
import { parseLlamaConfig } from '../../packages/core/src/hf-config.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import {
  Client,
  createTestEnv,
  spawnWorker,
  startTestApi,
  stopWorker,
  waitFor,
  type TestEnv,
  type WorkerProcess,
} from '../helpers/service.js';

const MODEL = 'tiny-llama';
/** the tiny model with its first norm scaled past float32's range: every forward pass overflows to NaN */
const OVERFLOW_MODEL = 'tiny-llama-overflow';

/** Writes the tiny model into `dir` with `model.layers.0.input_layernorm.weight` at 1e38. */
function overflowingModel(dir: string): void {
  createTinyModel(dir, { layers: 4 });
  const file = join(dir, 'model.safetensors');
  const { tensors } = readSafetensors(file);
  const out = new Map([...tensors].map(([n, t]) => [n, { shape: t.shape, data: Float32Array.from(t.data as ArrayLike<number>) }]));
  out.get('model.layers.0.input_layernorm.weight')!.data.fill(1e38);
  writeSafetensors(file, out);
}
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let db: PrismaClient;
let worker: WorkerProcess;
let train: string, val: string;
/** a workspace a killed job process left behind (its pid no longer runs), made before the worker starts */
let staleWork: string;

const untilDone = (id: string) =>
  waitFor(
    async () => {
      const j = (await c.get(`/v1/jobs/${id}`)).body;
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) && j;
    },
    120_000,
    `job ${id} finished`,
    200,
  );
const checkpoints = async (id: string) => (await c.get(`/v1/jobs/${id}/checkpoints?limit=100`)).body.data as any[];
const savedSteps = async (id: string) =>
  ((await c.get(`/v1/jobs/${id}/events?limit=1000`)).body.data as any[])
    .filter((e) => /^Checkpoint saved/.test(e.message))
    .map((e) => e.data.step as number);
/** Blobs no file, checkpoint or adapter references. */
const orphanBlobs = () => db.blob.count({ where: { file: { is: null }, checkpoint: { is: null }, adapter: { is: null } } });

beforeAll(async () => {
  await initBackend({ quiet: true });
  t = await createTestEnv({
    setupModels: (d) => {
      createTinyModel(join(d, MODEL), { layers: 4 });
      overflowingModel(join(d, OVERFLOW_MODEL));
    },
    env: { EDGETUNE_CHECKPOINTS_KEPT: '2' },
  });
  writeToyTask(join(t.dir, 'train.jsonl'), 32, 1);
  writeToyTask(join(t.dir, 'val.jsonl'), 16, 2);
  api = await startTestApi(t);
  c = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 2 });
  train = (await c.upload(readFileSync(join(t.dir, 'train.jsonl')), 'train.jsonl')).body.id;
  val = (await c.upload(readFileSync(join(t.dir, 'val.jsonl')), 'val.jsonl')).body.id;
  const deadPid = spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' }).pid;
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_]/g, '')
      .slice(0, 32) || 'host';
  staleWork = join(t.env.EDGETUNE_WORK_DIR as string, `ftjob_stale-${host}-${deadPid}-abcdef`);
  mkdirSync(join(staleWork, 'out'), { recursive: true });
  writeFileSync(join(staleWork, 'train.jsonl'), 'left behind');
  worker = spawnWorker(t, 'w-retention');
}, 120_000);

afterAll(async () => {
  if (worker) await stopWorker(worker);
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

const job = (extra: Record<string, unknown> = {}, hp: Record<string, unknown> = {}) => ({
  model: MODEL,
  training_file: train,
  validation_file: val,
  method: { type: 'lora' },
  hyperparameters: { max_steps: 12, batch_size: 4, max_length: 48, eval_steps: 2, ...hp },
  checkpointing: { every_n_steps: 2 },
  seed: 3,
  ...extra,
});

describe('stale workspaces', () => {
  it("the worker removes a killed job process's workspace at start", async () => {
    await waitFor(async () => !existsSync(staleWork), 60_000, 'stale workspace removed');
    expect(worker.log()).toContain(`removed stale workspace ${staleWork}`);
  });
});

describe('divergence', () => {
  it('a run whose loss overflows ends the job failed with training_diverged, not succeeded with a null loss', async () => {
    const r = await c.post('/v1/jobs', job({ model: OVERFLOW_MODEL }));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const done = await untilDone(r.body.id);
    expect(done.status, worker.log()).toBe('failed');
    expect(done.error).toMatchObject({ code: 'training_diverged', param: 'hyperparameters' });
    expect(done.error.message).toMatch(/training diverged at step \d+: the (loss|gradient norm|weights) is (NaN|-?Infinity)/);
    expect(done.result_files).toEqual([]);
    // it stopped at once, and a failed job keeps no checkpoints
    expect(done.progress.step).toBeLessThan(12);
    expect(await checkpoints(r.body.id)).toEqual([]);
  });
});

describe('checkpoint retention', () => {
  it('keeps the latest two and the best on validation while it runs, and all of those when asked to keep them', async () => {
    const r = await c.post('/v1/jobs', job({ checkpointing: { every_n_steps: 2, keep_after_finish: true } }));
    const done = await untilDone(r.body.id);
    expect(done.status, worker.log()).toBe('succeeded');
    expect(await savedSteps(r.body.id)).toEqual([2, 4, 6, 8, 10, 12]);
    const kept = await checkpoints(r.body.id);
    const steps = kept.map((k) => k.step_number).sort((a, b) => a - b);
    // the latest two, and at most one more: the best on validation among all saved
    expect(steps.slice(-2)).toEqual([10, 12]);
    expect(steps.length).toBeLessThanOrEqual(3);
    for (const k of kept) expect(k.metrics.valid_loss).toEqual(expect.any(Number));
    const best = Math.min(...kept.map((k) => k.metrics.valid_loss));
    const points = ((await c.get(`/v1/jobs/${r.body.id}/events?limit=1000`)).body.data as any[])
      .map((e) => e.data?.validation_point)
      .filter((p) => p && p.step <= 12);
    expect(best).toBeCloseTo(Math.min(...points.map((p: any) => p.loss)), 6);
    // pruned checkpoints took their blobs with them
    expect(await orphanBlobs()).toBe(0);

    // one checkpoint is what the API's storage limit forecasts for it (tar headers aside)
    const cfg = parseLlamaConfig(JSON.parse(readFileSync(join(t.modelsDir, MODEL, 'config.json'), 'utf8')));
    const forecast = checkpointBytesOf(cfg, { method: done.method, hyperparameters: done.hyperparameters, totalSteps: 12 }, 32, done.plan);
    const last = kept.find((k) => k.step_number === 12);
    expect(last.bytes / forecast).toBeGreaterThan(0.95);
    expect(last.bytes / forecast).toBeLessThan(1.2);
  });

  it('deletes them all (and their blobs) when the job ends unless asked to keep them', async () => {
    const before = await db.blob.count();
    const r = await c.post('/v1/jobs', job());
    const done = await untilDone(r.body.id);
    expect(done.status, worker.log()).toBe('succeeded');
    expect(done.checkpointing.keep_after_finish).toBe(false);
    expect((await savedSteps(r.body.id)).length).toBe(6);
    expect(done.checkpoints.count).toBe(0);
    expect(await checkpoints(r.body.id)).toEqual([]);
    // what is left of it: its adapters
    expect(await db.blob.count()).toBe(before + done.result_files.length);
    expect(await orphanBlobs()).toBe(0);
  });
});
