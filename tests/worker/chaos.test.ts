// Infrastructure faults in the middle of a job, against a PostgreSQL and a Redis this file starts itself
// (private instances it may stop and restart) with real worker processes: the worker killed, only its
// sandboxed job process killed (what the OOM killer does), Redis restarted without persistence while a
// reconciler re-queues the job the first run still trains, PostgreSQL restarted, and two workers on one job
// after the first one's queue lock expired. Each job must end `succeeded` once, with the adapter of an
// uninterrupted run, every training step recorded once, and no write from a superseded attempt.
// A fault lands at a known point: the job process is frozen (SIGSTOP) once the row reaches a step.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import * as tar from 'tar';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { startPostgres, startRedis, type PrivateStore } from '../helpers/stores.js';
import type * as Service from '../helpers/service.js';

const MODEL = 'tiny-llama';
const TOTAL = 60;
const EVERY = 5;
/** the step at which a fault lands (at least two checkpoints before it) */
const FAULT_STEP = 17;

let svc: typeof Service;
let pgStore: PrivateStore;
let redisStore: PrivateStore;
let t: Service.TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Service.Client;
let db: pg.Pool;
let train: string;
let reference: Float32Array[];
const workers: Service.WorkerProcess[] = [];

/** Worker settings: one BLAS thread (the same arithmetic in every run), reconciliation every second. */
const WORKER_ENV = { EDGETUNE_DEVICE_THREADS: '1', EDGETUNE_RECONCILE_INTERVAL_MS: '1000' };
const worker = (name: string) => {
  const w = svc.spawnWorker(t, name, WORKER_ENV);
  workers.push(w);
  return w;
};

const createJob = async () =>
  (
    await c.post('/v1/jobs', {
      model: MODEL,
      training_file: train,
      seed: 7,
      hyperparameters: { max_steps: TOTAL, batch_size: 4, lora_r: 4 },
      checkpointing: { every_n_steps: EVERY },
    })
  ).body.id as string;

const row = async (id: string) =>
  (await db.query<{ status: string; step: number; attempts: number }>('SELECT status, step, attempts FROM jobs WHERE id = $1', [id]))
    .rows[0];

/** Polls the row (straight from PostgreSQL: the API may be answering errors during an outage). */
const until = (id: string, ok: (r: { status: string; step: number; attempts: number }) => boolean, what: string, ms = 90_000) =>
  svc.waitFor(async () => ok(await row(id).catch(() => ({ status: '', step: -1, attempts: -1 }))), ms, what, 25);

/** The pid of the sandboxed process that runs job `id` (its `running` status event names it), once it is a child of `w`. */
async function sandboxPid(w: Service.WorkerProcess, id: string): Promise<number | null> {
  const r = await db.query<{ pid: number }>(
    "SELECT (data->>'pid')::int AS pid FROM job_events WHERE job_id = $1 AND type = 'status' AND data ? 'pid' ORDER BY seq DESC LIMIT 1",
    [id],
  );
  const pid = r.rows[0]?.pid;
  if (!pid) return null;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === w.proc.pid ? pid : null;
}

/** Freezes the process that runs job `id` on worker `w` once the job reached FAULT_STEP. @returns its pid. */
async function freezeAtFaultStep(w: Service.WorkerProcess, id: string): Promise<number> {
  const pid = await svc.waitFor(() => sandboxPid(w, id), 60_000, 'sandboxed process');
  await until(id, (r) => r.step >= FAULT_STEP, `step ${FAULT_STEP}`);
  process.kill(pid, 'SIGSTOP');
  const r = await row(id);
  expect(r.step, 'the fault lands mid-job').toBeLessThan(TOTAL);
  return pid;
}

/** The float32 tensors of a PEFT adapter's `adapter_model.safetensors`, in header order. */
function safetensors(buf: Buffer): Float32Array[] {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([, v]) => {
      expect(v.dtype).toBe('F32');
      const bytes = buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    });
}

async function adapterOf(id: string): Promise<Float32Array[]> {
  const peft = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`);
  expect(peft.status).toBe(200);
  const dir = join(t.dir, `peft-${id}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'peft.tar'), peft.data);
  await tar.extract({ file: join(dir, 'peft.tar'), cwd: dir });
  return safetensors(readFileSync(join(dir, 'adapter_model.safetensors')));
}

/**
 * Waits for job `id` to end and checks what every case must hold: `succeeded` once and nothing after, every
 * step's metrics recorded once, no `cancelled`, and the adapter equal to the uninterrupted run's (to 1e-6).
 * @returns the job's events.
 */
async function expectLikeReference(id: string, logs: () => string): Promise<any[]> {
  await until(id, (r) => ['succeeded', 'failed', 'cancelled'].includes(r.status), 'the end of the job', 120_000);
  const job = (await c.get(`/v1/jobs/${id}`)).body;
  expect(job.status, `${JSON.stringify(job.error)}\n${logs()}`).toBe('succeeded');
  const events = (await c.get(`/v1/jobs/${id}/events?limit=1000`)).body.data as any[];
  const steps = events.filter((e) => e.type === 'metrics' && typeof e.data?.step === 'number').map((e) => e.data.step);
  expect(steps).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
  const statuses = events.filter((e) => e.type === 'status').map((e) => e.data.status);
  expect(statuses.filter((s) => s === 'succeeded')).toHaveLength(1);
  expect(statuses.at(-1)).toBe('succeeded');
  expect(statuses).not.toContain('cancelled');
  expect(statuses).not.toContain('failed');
  // nothing lands after the final status (a superseded attempt writes nothing more)
  await sleep(1500);
  expect(((await c.get(`/v1/jobs/${id}/events?limit=1000`)).body.data as any[]).length).toBe(events.length);
  const got = await adapterOf(id);
  expect(got.length).toBe(reference.length);
  let maxDiff = 0;
  for (let i = 0; i < got.length; i++)
    for (let j = 0; j < got[i].length; j++) maxDiff = Math.max(maxDiff, Math.abs(got[i][j] - reference[i][j]));
  expect(maxDiff).toBeLessThanOrEqual(1e-6);
  return events;
}

const stopAll = async () => {
  for (const w of workers.splice(0)) {
    // a frozen process takes no SIGTERM
    try {
      process.kill(-w.proc.pid!, 'SIGCONT');
    } catch {
      /* gone */
    }
    await svc.stopWorker(w, 5000);
  }
};

beforeAll(async () => {
  [pgStore, redisStore] = await Promise.all([startPostgres(), startRedis()]);
  process.env.EDGETUNE_TEST_PG_URL = pgStore.url;
  process.env.EDGETUNE_TEST_REDIS_URL = redisStore.url;
  svc = await import('../helpers/service.js');
  await initBackend({ quiet: true });
  t = await svc.createTestEnv({ setupModels: (d) => createTinyModel(join(d, MODEL), { layers: 2 }) });
  db = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
  db.on('error', () => {});
  writeToyTask(join(t.dir, 'train.jsonl'), 32, 1);
  api = await svc.startTestApi(t);
  c = new svc.Client(api.url);
  train = (await c.upload(readFileSync(join(t.dir, 'train.jsonl')), 'train.jsonl')).body.id;
  worker('w-ref');
  const id = await createJob();
  await until(id, (r) => r.status === 'succeeded', 'the reference run', 120_000);
  reference = await adapterOf(id);
  expect(reference.length).toBeGreaterThan(0);
}, 180_000);

afterAll(async () => {
  await stopAll();
  await api?.stop();
  await db?.end();
  await t?.destroy();
  await Promise.all([pgStore?.destroy(), redisStore?.destroy()]);
});

describe('a job survives', () => {
  it('kill -9 of its sandboxed process: resumed from the last checkpoint by the same worker', async () => {
    const w = workers[0];
    const id = await createJob();
    const pid = await freezeAtFaultStep(w, id);
    process.kill(pid, 'SIGKILL');
    const events = await expectLikeReference(id, w.log);
    expect((await row(id)).attempts).toBe(2);
    const requeued = events.find((e) => e.data?.requeued_after === 'crash');
    expect(requeued?.message).toMatch(/SIGKILL/);
  });

  it('PostgreSQL restarted mid-job: the run waits for it and goes on, not failed', async () => {
    const w = workers[0];
    const id = await createJob();
    const pid = await freezeAtFaultStep(w, id);
    await pgStore.stop('fast');
    process.kill(pid, 'SIGCONT');
    await sleep(4000);
    await pgStore.start();
    // the same attempt goes on (its writes retried, or its queries waiting for a connection): not failed, not re-queued
    await expectLikeReference(id, w.log);
    expect((await row(id)).attempts).toBe(1);
  });

  it('Redis restarted without persistence while a reconciler re-queues the job its first run still trains', async () => {
    const w = workers[0];
    const id = await createJob();
    const pid = await freezeAtFaultStep(w, id);
    await redisStore.stop('fast');
    await redisStore.start();
    // the frozen run looks stuck past the reconciler's grace: its queue job is gone, so the job is re-queued
    await db.query("UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = $1", [id]);
    await until(id, (r) => r.status === 'queued', 're-queued by the reconciler', 30_000);
    process.kill(pid, 'SIGCONT');
    await expectLikeReference(id, w.log);
    expect((await row(id)).attempts).toBe(2);
    expect(w.log()).toMatch(/stopped: /);
  });

  it('kill -9 of its worker: a new worker resumes it', async () => {
    await stopAll();
    const a = worker('w-doomed');
    const id = await createJob();
    await freezeAtFaultStep(a, id);
    a.killGroup();
    await a.exited;
    const b = worker('w-rescue');
    await expectLikeReference(id, () => a.log() + b.log());
    expect((await row(id)).attempts).toBe(2);
  });

  it("two workers on one job after the first one's lock expired: the stale attempt stops itself", async () => {
    await stopAll();
    const a = worker('w-stale');
    const id = await createJob();
    await freezeAtFaultStep(a, id);
    // the whole worker freezes: its lock lapses, and another worker's stalled checker hands the job over
    process.kill(-a.proc.pid!, 'SIGSTOP');
    const b = worker('w-new');
    await until(id, (r) => r.attempts === 2 && r.status === 'running', 'the second attempt', 60_000);
    process.kill(-a.proc.pid!, 'SIGCONT');
    await expectLikeReference(id, () => a.log() + b.log());
    expect((await row(id)).attempts).toBe(2);
    expect(a.log()).toMatch(/stopped: /);
  });
});
