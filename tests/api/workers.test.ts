// The worker registry and planning for the worker's device: with no live worker a job is planned for the
// API host (default throughput); with live workers, for the one with the least memory budget among those
// that have the model; stale heartbeats do not count; a job's own device fields win; admission refuses a job
// that cannot fit the chosen worker; GET /v1/workers lists them. Rows are written with the same functions
// a worker uses (the worker process itself is covered in tests/worker/jobs.test.ts).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { createPrisma } from '../../packages/store/src/db.js';
import { heartbeatWorker, planningWorker, removeWorker, STALE_WORKER_RETENTION_MS } from '../../packages/store/src/workers.js';
import type { WorkerDevice } from '../../packages/core/src/service/workers.js';
import { fakeModel, Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

const HEARTBEAT_MS = 1000;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let db: ReturnType<typeof createPrisma>;
let train: string;

const GiB = 2 ** 30;
const dev = (memoryBudgetBytes: number, matmulGflops: number, threads = 2, stepTimeFactor: number | null = null): WorkerDevice => ({
  memoryBudgetBytes,
  totalMemoryBytes: 16 * GiB,
  threads,
  backend: 'wasm',
  matmul: `openblas(${threads} threads)`,
  matmulGflops,
  stepTimeFactor,
  tensorHeapCeilingBytes: 4294901760,
});
const beat = (id: string, host: string, device: WorkerDevice) =>
  heartbeatWorker(db, { id, host, pid: Number(id.split(':')[1]), concurrency: 1, device });
const body = () => ({ model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8, batch_size: 8, max_length: 64 } });
const dry = async (extra: object = {}) => {
  const r = await c.post('/v1/jobs?dry_run=true', { ...body(), ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.plan;
};

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => fakeModel(join(d, 'tiny-llama')),
    env: { EDGETUNE_WORKER_HEARTBEAT_MS: String(HEARTBEAT_MS) },
  });
  api = await startTestApi(t);
  c = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 2 });
  const lines = `${Array.from({ length: 20 }, (_, i) =>
    JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' }),
  ).join('\n')}\n`;
  train = (await c.upload(lines)).body.id;
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

describe("planning for the workers' device", () => {
  it("no live worker: the API host's memory and cores with the default throughput", async () => {
    expect((await c.get('/v1/workers')).body).toEqual({ object: 'list', data: [] });
    const p = await dry();
    expect(p.device).toMatchObject({ source: 'api_host', worker_id: null, matmul_gflops: 20 });
  });

  it("live workers: the least memory among those with the model, else among all; stale ones ignored; the job's fields win; admission uses it", async () => {
    await beat('box-a:11', 'box-a', dev(8 * GiB, 150));
    await beat('box-b:22', 'box-b', dev(3 * GiB, 90, 4));
    // neither reported the model: the smaller of the two
    let p = await dry();
    expect(p.device).toEqual({
      memory_budget_bytes: 3 * GiB,
      threads: 4,
      backend: 'wasm',
      matmul_gflops: 90,
      step_time_factor: 1,
      tensor_heap_ceiling_bytes: 4294901760, // the wasm worker's ceiling applies whatever its budget
      source: 'worker',
      worker_id: 'box-b:22',
    });
    // the time forecast follows the worker's throughput: the same job on the 150 GFLOP/s box is faster
    const slow = p.forecast.step_ms;
    await db.baseModel.update({ where: { id: 'tiny-llama' }, data: { hosts: { push: 'worker@box-a' } } });
    p = await dry();
    expect(p.device).toMatchObject({ memory_budget_bytes: 8 * GiB, matmul_gflops: 150, worker_id: 'box-a:11' });
    expect(p.forecast.step_ms).toBeLessThan(slow);
    // ... and the worker's measured step-time factor: the non-matmul part of step time scales by it, memory does not
    await beat('box-a:11', 'box-a', dev(8 * GiB, 150, 2, 1.5));
    const scaled = await dry();
    expect(scaled.device).toMatchObject({ step_time_factor: 1.5, worker_id: 'box-a:11' });
    expect(scaled.forecast.step_ms).toBeGreaterThan(1.2 * p.forecast.step_ms);
    expect(scaled.forecast.step_ms).toBeLessThan(1.5 * p.forecast.step_ms);
    expect(scaled.forecast.peak_rss_bytes).toBe(p.forecast.peak_rss_bytes);
    await beat('box-a:11', 'box-a', dev(8 * GiB, 150));
    // the job's own fields win over the worker's; the rest still comes from it
    p = await dry({ device: { memory_budget_bytes: GiB } });
    expect(p.device).toMatchObject({ memory_budget_bytes: GiB, matmul_gflops: 150, source: 'worker', worker_id: 'box-a:11' });
    // a worker whose heartbeat stopped more than 3 intervals ago is not planned for
    await db.worker.update({ where: { id: 'box-a:11' }, data: { heartbeatAt: new Date(Date.now() - 4 * HEARTBEAT_MS) } });
    expect((await dry()).device.worker_id).toBe('box-b:22');
    const list = (await c.get('/v1/workers')).body.data;
    expect(list.map((w: any) => [w.id, w.online])).toEqual(
      expect.arrayContaining([
        ['box-a:11', false],
        ['box-b:22', true],
      ]),
    );
    expect(list.find((w: any) => w.id === 'box-b:22')).toMatchObject({
      object: 'worker',
      host: 'box-b',
      concurrency: 1,
      device: {
        memory_budget_bytes: 3 * GiB,
        total_memory_bytes: 16 * GiB,
        threads: 4,
        backend: 'wasm',
        matmul: 'openblas(4 threads)',
        matmul_gflops: 90,
        step_time_factor: null,
      },
    });
    // admission: a job the live worker cannot hold is refused before it is queued, naming its budget
    await beat('box-b:22', 'box-b', dev(64 * 2 ** 20, 90, 4));
    const r = await c.post('/v1/jobs', body());
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({
      code: 'plan_does_not_fit',
      plan: { fits: false, device: { memory_budget_bytes: 64 * 2 ** 20, worker_id: 'box-b:22' } },
    });
    expect((await c.get('/v1/jobs')).body.data).toEqual([]);
    await removeWorker(db, 'box-a:11');
    await removeWorker(db, 'box-b:22');
    expect((await c.post('/v1/jobs?dry_run=true', body())).body.plan.device.source).toBe('api_host');
  });

  it('a heartbeat updates the row and clears rows not heard from for a day', async () => {
    await beat('box-c:33', 'box-c', dev(2 * GiB, 50));
    await beat('box-d:44', 'box-d', dev(2 * GiB, 50));
    await db.worker.update({ where: { id: 'box-d:44' }, data: { heartbeatAt: new Date(Date.now() - STALE_WORKER_RETENTION_MS - 1000) } });
    await beat('box-c:33', 'box-c', dev(5 * GiB, 60));
    expect((await db.worker.findMany()).map((w) => [w.id, Number(w.memoryBudgetBytes), w.matmulGflops])).toEqual([
      ['box-c:33', 5 * GiB, 60],
    ]);
    expect((await planningWorker(db, HEARTBEAT_MS, []))?.id).toBe('box-c:33');
    expect(await planningWorker(db, HEARTBEAT_MS / 1e6, [])).toBeNull(); // a heartbeat ~now is older than 3 ns
    await removeWorker(db, 'box-c:33');
    expect(await db.worker.count()).toBe(0);
  });
});
