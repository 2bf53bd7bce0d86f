// Fencing of a job's attempts against real PostgreSQL and Redis, with the worker's own claim and finish
// steps: once a newer attempt claimed a job, every write of the older one (events, progress, checkpoints,
// status changes) is refused with StaleAttemptError and changes nothing; a claim waits for a write in
// flight, so no write of the older attempt lands after it; a resumed attempt does not record the step
// metrics an earlier attempt recorded.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { redisConnection } from '../../packages/store/src/queue.js';

import { newId } from '../../packages/core/src/service/ids.js';
import { loadConfig } from '../../packages/core/src/service/config.js';
import { QUEUE_NAME, type QueueJobData } from '../../packages/core/src/service/queue.js';
import { claimJob } from '../../apps/worker/src/job/claim.js';
import type { JobRun, RunContext } from '../../apps/worker/src/job/context.js';
import { cancelRun, failJob, requeue } from '../../apps/worker/src/job/finish.js';
import { ProgressReporter } from '../../apps/worker/src/job/progress.js';
import { createTestEnv, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let db: PrismaClient;
let redis: Redis;
let queue: Queue<QueueJobData>;
let ctx: RunContext;
const projectId = 'proj_fencing';
/** a refused write (the worker's StaleAttemptError: its package build, not this test's import of the source) */
const STALE = { name: 'StaleAttemptError', message: expect.stringContaining('is stale') };

async function queuedJob(): Promise<string> {
  const id = newId('job');
  await db.job.create({
    data: {
      id,
      projectId,
      model: 'no-such-model',
      trainingFile: 'file_none',
      status: 'queued',
      method: { type: 'edge_llm', edge_llm: {} },
      hyperparameters: {},
      checkpointEvery: 5,
      seed: 1,
      metadata: {},
      totalSteps: 40,
      queueJobId: id,
    },
  });
  return id;
}

const claim = async (id: string) => {
  const run = await claimJob(ctx, id, id);
  if (typeof run === 'string') throw new Error(`not claimed: ${run}`);
  return run;
};
const row = (id: string) => db.job.findUniqueOrThrow({ where: { id } });
const events = (id: string) => db.jobEvent.findMany({ where: { jobId: id }, orderBy: { seq: 'asc' } });
const step = (n: number) =>
  ({
    step: n,
    totalSteps: 40,
    loss: 1 / n,
    lr: 1e-3,
    gradNorm: 1,
    window: [0, 1],
    exitLayer: 1,
    tokens: 10 * n,
    tokensPerSec: 100,
    stepMs: 10,
    elapsedMs: 10 * n,
    etaMs: 1000,
  }) as Parameters<ProgressReporter['onStep']>[0];

beforeAll(async () => {
  t = await createTestEnv();
  db = createPrisma(t.databaseUrl, { max: 4 });
  redis = redisConnection(t.redisUrl);
  queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: t.prefix });
  ctx = {
    config: loadConfig(t.env),
    db,
    redis,
    queue,
    workerId: 'w-fencing:1',
    engine: () => Promise.reject(new Error('no engine here')),
    log: () => {},
  };
  await db.project.create({ data: { id: projectId, name: 'fencing' } });
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await db?.$disconnect();
  await t?.destroy();
});

describe('a job claimed by a newer attempt', () => {
  it('refuses every write of the older attempt, which changes nothing', async () => {
    const id = await queuedJob();
    const a = await claim(id);
    expect(a.attempt).toBe(1);
    const pa = new ProgressReporter(a, new AbortController().signal);
    for (let s = 1; s <= 7; s++) await pa.onStep(step(s));
    await pa.flush();
    const b = await claim(id); // a's lock expired: another delivery takes the running job over
    expect(b.attempt).toBe(2);
    expect(b.recorded.step).toBe(7);
    const before = { row: await row(id), events: (await events(id)).length };

    const late = async () => {
      await pa.onStep(step(8));
      await pa.flush();
    };
    await expect(late()).rejects.toMatchObject(STALE);
    await expect(a.events([{ message: 'late' }])).rejects.toMatchObject(STALE);
    await expect(a.write((tx) => tx.job.update({ where: { id }, data: { step: 99 } }))).rejects.toMatchObject(STALE);
    await expect(failJob(a, { code: 'internal_error', message: 'x', param: null })).rejects.toMatchObject(STALE);
    await expect(cancelRun(a)).rejects.toMatchObject(STALE);
    await expect(requeue(a)).rejects.toMatchObject(STALE);
    expect(await row(id)).toEqual(before.row);
    expect((await events(id)).length).toBe(before.events);
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 0 });

    // the owner writes; the steps the older attempt recorded are not recorded again
    const pb = new ProgressReporter(b, new AbortController().signal);
    for (let s = 6; s <= 9; s++) await pb.onStep(step(s));
    await pb.flush();
    const steps = (await events(id)).filter((e) => e.type === 'metrics').map((e) => (e.data as { step: number }).step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await failJob(b, { code: 'internal_error', message: 'boom', param: null })).toBe('failed');
    expect(await row(id)).toMatchObject({ status: 'failed', attempts: 2 });
  });

  it('a claim waits for a write of the older attempt in flight; none lands after it', async () => {
    const id = await queuedJob();
    const a = await claim(id);
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let entered = () => {};
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    const write = a.write(async (tx) => {
      entered();
      await held;
      await tx.job.update({ where: { id }, data: { step: 3 } });
    });
    await inside;
    let claimed = false;
    const b = claim(id).then((r) => {
      claimed = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(claimed).toBe(false); // the row is held by a's write
    release();
    await write;
    expect((await b).attempt).toBe(2);
    expect((await row(id)).step).toBe(3);
    await expect(a.write((tx) => tx.job.update({ where: { id }, data: { step: 4 } }))).rejects.toMatchObject(STALE);
    expect((await row(id)).step).toBe(3);
  });

  it('two claims racing: exactly one attempt gets each number', async () => {
    const id = await queuedJob();
    const got = await Promise.all([claimJob(ctx, id, id), claimJob(ctx, id, id)]);
    const runs = got.filter((r): r is JobRun => typeof r !== 'string');
    expect(runs.map((r) => r.attempt).sort()).toEqual(runs.length === 2 ? [1, 2] : [1]);
    expect((await row(id)).attempts).toBe(Math.max(...runs.map((r) => r.attempt)));
  });
});
