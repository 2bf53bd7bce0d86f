// Jobs that BullMQ no longer delivers (its job failed because it stalled too often, or is gone) against
// real PostgreSQL and Redis: the reconciler settles them from BullMQ's own state. A `cancelling` job ends
// `cancelled`, a job whose queue job stalled out ends `failed` with `worker_lost`, and a job whose queue
// job is gone goes back to the queue and resumes from its latest checkpoint; a job an API left in
// `validating_files` for over 60 s (it died before queueing it) ends `failed` with `api_interrupted`. The queue states are made
// the way a dead worker leaves them (in-process BullMQ workers that fetch a job and die, and the stalled
// checker), and a real worker process settles them at startup, from its `failed` handler and periodically.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { createPrisma, type PrismaClient } from '../../packages/store/src/db.js';
import { newId } from '../../packages/core/src/service/ids.js';
import { putBlob } from '../../packages/store/src/blobs.js';
import { QUEUE_NAME, type QueueJobData } from '../../packages/core/src/service/queue.js';
import { redisConnection } from '../../packages/store/src/queue.js';
import { reconcileJobs, settleFailedQueueJob, type ReconcileDeps } from '../../apps/worker/src/reconcile.js';
import { createTestEnv, spawnWorker, stopWorker, waitFor, type TestEnv, type WorkerProcess } from '../helpers/service.js';

let t: TestEnv;
let db: PrismaClient;
let redis: Redis;
let queue: Queue<QueueJobData>;
let deps: ReconcileDeps;
const projectId = 'proj_reconcile';
const STALLED = 'job stalled more than allowable limit';

/** A job row in `status` whose queue job is `queueJobId`, last updated an hour ago unless `fresh`. */
async function jobRow(
  status: string,
  opts: { queueJobId?: string | null; fresh?: boolean } = {},
): Promise<{ id: string; queueJobId: string | null }> {
  const id = newId('job');
  const queueJobId = opts.queueJobId === undefined ? id : opts.queueJobId;
  const unstarted = status === 'queued' || status === 'validating_files';
  await db.job.create({
    data: {
      id,
      projectId,
      model: 'no-such-model',
      trainingFile: 'file_none',
      status,
      method: { type: 'edge_llm', edge_llm: {} },
      hyperparameters: {},
      checkpointEvery: 5,
      seed: 1,
      metadata: {},
      totalSteps: 40,
      queueJobId,
      startedAt: unstarted ? null : new Date(),
      attempts: unstarted ? 0 : 1,
      step: unstarted ? 0 : 7,
    },
  });
  if (!opts.fresh) await db.$executeRaw`UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = ${id}`;
  return { id, queueJobId };
}

/** A checkpoint of `jobId` at `step` (a tiny blob: only its step matters here). */
async function checkpoint(jobId: string, step: number): Promise<void> {
  const blob = await putBlob(db, Buffer.from(`checkpoint ${step}`), 'application/x-tar');
  await db.checkpoint.create({ data: { id: newId('checkpoint'), jobId, step, metrics: {}, blobId: blob.id } });
}

const addQueueJob = (queueJobId: string, jobId: string) =>
  queue.add('tune', { jobId }, { jobId: queueJobId, removeOnComplete: 1000, removeOnFail: 5000 });

/** Adds queue job `queueJobId` and makes it active under a worker that dies at once (its lock lapses, unrenewed). */
async function orphanActive(queueJobId: string, jobId: string): Promise<void> {
  await addQueueJob(queueJobId, jobId);
  const conn = redisConnection(t.redisUrl);
  const w = new Worker<QueueJobData>(QUEUE_NAME, null, { connection: conn, prefix: t.prefix, lockDuration: 300, autorun: false });
  try {
    const got = await w.getNextJob('dead-worker-token', { block: false });
    expect(got?.id).toBe(queueJobId);
  } finally {
    await w.close();
    conn.disconnect();
  }
}

/** Leaves queue job `queueJobId` failed the way BullMQ fails a job whose worker died more than maxStalledCount times. */
async function stallOut(queueJobId: string, jobId: string): Promise<void> {
  await orphanActive(queueJobId, jobId);
  const conn = redisConnection(t.redisUrl);
  const w = new Worker<QueueJobData>(
    QUEUE_NAME,
    async () => {
      throw new Error('the processor must not run');
    },
    {
      connection: conn,
      prefix: t.prefix,
      lockDuration: 300,
      stalledInterval: 100,
      maxStalledCount: 0,
    },
  );
  try {
    await waitFor(async () => (await (await queue.getJob(queueJobId))?.getState()) === 'failed', 10_000, `${queueJobId} stalled out`);
    expect((await queue.getJob(queueJobId))?.failedReason).toBe(STALLED);
  } finally {
    await w.close();
    conn.disconnect();
  }
}

const row = (id: string) => db.job.findUniqueOrThrow({ where: { id } });
const statusEvents = async (id: string) =>
  (await db.jobEvent.findMany({ where: { jobId: id, type: 'status' }, orderBy: { seq: 'asc' } })).map((e) => ({
    message: e.message,
    level: e.level,
    data: e.data as Record<string, unknown>,
  }));

beforeAll(async () => {
  t = await createTestEnv();
  db = createPrisma(t.databaseUrl, { max: 3 });
  redis = redisConnection(t.redisUrl);
  queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: t.prefix });
  deps = { db, queue, redis, prefix: t.prefix };
  await db.project.create({ data: { id: projectId, name: 'reconcile' } });
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await db?.$disconnect();
  await t?.destroy();
});

describe('reconcileJobs', () => {
  afterEach(async () => {
    await queue.obliterate({ force: true });
    await db.job.deleteMany({});
  });

  it('cancelling jobs whose queue job failed, completed or is gone end cancelled, with a status event', async () => {
    const failed = await jobRow('cancelling');
    await stallOut(failed.queueJobId!, failed.id);
    const gone = await jobRow('cancelling');
    const done = await jobRow('cancelling');
    await addQueueJob(done.queueJobId!, done.id);
    const conn = redisConnection(t.redisUrl);
    const w = new Worker<QueueJobData>(QUEUE_NAME, null, { connection: conn, prefix: t.prefix, autorun: false });
    const got = await w.getNextJob('token', { block: false });
    await got!.moveToCompleted('skipped', 'token', false);
    await w.close();
    conn.disconnect();

    const settled = await reconcileJobs(deps);
    expect(settled).toEqual(
      expect.arrayContaining([
        { jobId: failed.id, from: 'cancelling', queueState: 'failed', to: 'cancelled' },
        { jobId: gone.id, from: 'cancelling', queueState: 'missing', to: 'cancelled' },
        { jobId: done.id, from: 'cancelling', queueState: 'completed', to: 'cancelled' },
      ]),
    );
    expect(settled).toHaveLength(3);
    for (const j of [failed, gone, done]) {
      const r = await row(j.id);
      expect(r.status).toBe('cancelled');
      expect(r.finishedAt).toBeInstanceOf(Date);
      expect(r.error).toBeNull();
      expect((await statusEvents(j.id)).at(-1)).toMatchObject({ data: { status: 'cancelled' } });
    }
    expect(await reconcileJobs(deps)).toEqual([]); // settled once
  });

  it('a running job whose queue job stalled out ends failed with worker_lost; a job whose queue job is gone is re-queued from its latest checkpoint', async () => {
    const stalled = await jobRow('running');
    await stallOut(stalled.queueJobId!, stalled.id);
    const lost = await jobRow('running');
    await checkpoint(lost.id, 5);
    await checkpoint(lost.id, 10);
    const neverQueued = await jobRow('queued'); // e.g. the API died between writing `queued` and enqueueing

    const settled = await reconcileJobs(deps);
    expect(settled).toHaveLength(3);
    const s = await row(stalled.id);
    expect(s).toMatchObject({ status: 'failed', error: { code: 'worker_lost', message: expect.stringContaining(STALLED), param: null } });
    expect(s.finishedAt).toBeInstanceOf(Date);
    expect((await statusEvents(stalled.id)).at(-1)).toMatchObject({
      level: 'error',
      data: { status: 'failed', error: { code: 'worker_lost' } },
    });

    const l = await row(lost.id);
    expect(l).toMatchObject({ status: 'queued', step: 10, finishedAt: null, error: null });
    expect(l.queueJobId).not.toBe(lost.queueJobId);
    const qj = await queue.getJob(l.queueJobId!);
    expect(qj?.data).toEqual({ jobId: lost.id });
    expect(await qj!.getState()).toBe('waiting');
    expect((await statusEvents(lost.id)).at(-1)).toMatchObject({ level: 'warn', data: { status: 'queued', resume_step: 10 } });

    const q = await row(neverQueued.id);
    expect(q).toMatchObject({ status: 'queued', step: 0 });
    expect(await (await queue.getJob(q.queueJobId!))?.getState()).toBe('waiting');

    // the new queue jobs are live: nothing more to do
    expect(await reconcileJobs(deps)).toEqual([]);
  });

  it('leaves alone jobs BullMQ still holds (waiting, active), finished or unaccepted jobs, and rows changed within the grace period', async () => {
    const active = await jobRow('cancelling');
    await orphanActive(active.queueJobId!, active.id); // its worker died, but the stalled checker has not run yet
    const waiting = await jobRow('queued');
    await addQueueJob(waiting.queueJobId!, waiting.id);
    const fresh = await jobRow('cancelling', { fresh: true }); // the API may still be between its two writes
    const terminal = await jobRow('succeeded');
    // past the 30 s grace of accepted jobs but within the 60 s one of validating_files rows: its POST may still run
    const validating = await jobRow('validating_files', { fresh: true });
    await db.$executeRaw`UPDATE jobs SET updated_at = now() - interval '45 seconds' WHERE id = ${validating.id}`;

    expect(await reconcileJobs(deps)).toEqual([]);
    expect((await row(waiting.id)).status).toBe('queued');
    expect((await row(active.id)).status).toBe('cancelling');
    expect((await row(fresh.id)).status).toBe('cancelling');
    expect((await row(terminal.id)).status).toBe('succeeded');
    expect((await row(validating.id)).status).toBe('validating_files');
    // past the grace period the fresh row is settled
    expect(await reconcileJobs(deps, { graceMs: 0 })).toEqual([
      { jobId: fresh.id, from: 'cancelling', queueState: 'missing', to: 'cancelled' },
    ]);
  });

  it('a job an API left in validating_files for over 60 s ends failed (api_interrupted), once, even with racing reconcilers, and is not queued', async () => {
    const left = await jobRow('validating_files'); // an hour old: its API died between creating the row and queueing it
    const [a, b] = await Promise.all([reconcileJobs(deps), reconcileJobs(deps)]);
    expect([...a, ...b]).toEqual([{ jobId: left.id, from: 'validating_files', queueState: 'missing', to: 'failed' }]);
    const r = await row(left.id);
    expect(r).toMatchObject({
      status: 'failed',
      error: { code: 'api_interrupted', message: expect.stringContaining('never accepted'), param: null },
      step: 0,
    });
    expect(r.finishedAt).toBeInstanceOf(Date);
    expect(await statusEvents(left.id)).toEqual([
      {
        message: expect.stringContaining('Job failed: The API stopped'),
        level: 'error',
        data: { status: 'failed', error: expect.objectContaining({ code: 'api_interrupted' }) },
      },
    ]);
    expect(await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed')).toEqual({
      waiting: 0,
      active: 0,
      delayed: 0,
      failed: 0,
      completed: 0,
    });
    expect(await reconcileJobs(deps)).toEqual([]);
  });

  it('two reconcilers racing on a lost job re-queue it once', async () => {
    const lost = await jobRow('running');
    const [a, b] = await Promise.all([reconcileJobs(deps), reconcileJobs(deps)]);
    expect([...a, ...b]).toEqual([{ jobId: lost.id, from: 'running', queueState: 'missing', to: 'queued' }]);
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect((await statusEvents(lost.id)).filter((e) => e.data.status === 'queued')).toHaveLength(1);
  });

  it("settleFailedQueueJob: a failed queue job that is no longer the row's leaves the row alone", async () => {
    const j = await jobRow('running', { queueJobId: 'current-queue-job' });
    expect(await settleFailedQueueJob(deps, j.id, 'an-older-queue-job', STALLED)).toBeNull();
    expect((await row(j.id)).status).toBe('running');
    expect(await settleFailedQueueJob(deps, j.id, 'current-queue-job', 'processor threw: boom')).toBe('failed');
    expect((await row(j.id)).error).toMatchObject({ code: 'worker_error', message: expect.stringContaining('boom') });
  });

  it('settleFailedQueueJob: a job whose process died goes back to the queue from its checkpoint, 3 times, then fails with worker_crashed', async () => {
    const j = await jobRow('running', { queueJobId: 'crashing-0' });
    await checkpoint(j.id, 5);
    const reasons = [
      'Unexpected exit code: null signal: SIGKILL',
      'job interrupted: Connection terminated unexpectedly',
      'Unexpected exit code: 134 signal: null',
    ];
    let current = 'crashing-0';
    for (const reason of reasons) {
      expect(await settleFailedQueueJob(deps, j.id, current, reason, 'another-worker:1')).toBeNull(); // not that worker's attempt
      expect(await settleFailedQueueJob(deps, j.id, current, reason)).toBe('queued');
      const r = await row(j.id);
      expect(r).toMatchObject({ status: 'queued', step: 5 });
      expect(r.queueJobId).not.toBe(current);
      current = r.queueJobId!;
      await db.job.update({ where: { id: j.id }, data: { status: 'running' } }); // the next attempt claims it
    }
    expect(await settleFailedQueueJob(deps, j.id, current, 'Unexpected exit code: null signal: SIGKILL')).toBe('failed');
    expect((await row(j.id)).error).toMatchObject({ code: 'worker_crashed', message: expect.stringContaining('SIGKILL') });
    const requeued = (await statusEvents(j.id)).filter((e) => e.data.requeued_after === 'crash');
    expect(requeued.map((e) => e.data.resume_step)).toEqual([5, 5, 5]);
  });
});

describe('a worker process reconciles', () => {
  let w: WorkerProcess | undefined;
  const rows: Record<string, { id: string; queueJobId: string | null }> = {};

  beforeAll(async () => {
    rows.cancelFailed = await jobRow('cancelling');
    await stallOut(rows.cancelFailed.queueJobId!, rows.cancelFailed.id);
    rows.cancelGone = await jobRow('cancelling');
    rows.runFailed = await jobRow('running');
    await stallOut(rows.runFailed.queueJobId!, rows.runFailed.id);
    rows.runGone = await jobRow('running');
    await checkpoint(rows.runGone.id, 5);
    // workers died holding these; with EDGETUNE_MAX_STALLED_COUNT=0 the new worker's stalled checker fails them
    rows.cancelStalling = await jobRow('cancelling');
    await orphanActive(rows.cancelStalling.queueJobId!, rows.cancelStalling.id);
    rows.runStalling = await jobRow('running');
    await orphanActive(rows.runStalling.queueJobId!, rows.runStalling.id);
    rows.validating = await jobRow('validating_files'); // left by an API that died while creating it
    w = spawnWorker(t, 'w-reconcile', { EDGETUNE_MAX_STALLED_COUNT: '0', EDGETUNE_RECONCILE_INTERVAL_MS: '500' });
  });

  afterAll(async () => {
    if (w) await stopWorker(w);
  });

  it('at startup and from its failed handler: cancelling jobs end cancelled, stalled-out running jobs failed (worker_lost), a lost running job runs again, an abandoned validating job failed (api_interrupted)', async () => {
    const ids = Object.values(rows).map((r) => r.id);
    // settled: each row finished and its last status event written (just after the row)
    const settled = async () =>
      (
        await Promise.all(ids.map(async (id) => ['cancelled', 'failed'].includes((await statusEvents(id)).at(-1)?.data.status as string)))
      ).every(Boolean);
    await waitFor(settled, 15_000, 'every job settled', 200).catch((e) => {
      throw new Error(`${(e as Error).message}\n${w!.log().slice(-3000)}`);
    });
    for (const k of ['cancelFailed', 'cancelGone', 'cancelStalling']) {
      const r = await row(rows[k].id);
      expect(r.status, k).toBe('cancelled');
      expect(r.error, k).toBeNull();
    }
    for (const k of ['runFailed', 'runStalling']) {
      expect(await row(rows[k].id), k).toMatchObject({
        status: 'failed',
        error: { code: 'worker_lost', message: expect.stringContaining(STALLED) },
      });
    }
    expect(await row(rows.validating.id)).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'api_interrupted' } });
    // the lost job went back to the queue (resuming at its checkpoint) and the worker picked it up: it has no such model
    const gone = await row(rows.runGone.id);
    expect(gone).toMatchObject({ status: 'failed', attempts: 2, error: { code: 'model_not_available' } });
    expect((await statusEvents(rows.runGone.id)).map((e) => e.data.status)).toEqual(['queued', 'failed']);
    expect((await statusEvents(rows.runGone.id))[0].data.resume_step).toBe(5);
  });

  it('periodically: a cancelling job whose queue job disappears later ends cancelled', async () => {
    const j = await jobRow('cancelling');
    // the event is written just after the row
    await waitFor(async () => (await statusEvents(j.id)).at(-1)?.data.status === 'cancelled', 10_000, 'periodic reconcile', 200);
    expect((await row(j.id)).status).toBe('cancelled');
  });

  it("a stale queue job (no longer the row's) is skipped; the row's own queue job runs it", async () => {
    const j = await jobRow('queued', { queueJobId: 'current-queue-job', fresh: true });
    await addQueueJob('stale-queue-job', j.id); // delivered first
    await addQueueJob('current-queue-job', j.id);
    const finished = async (qid: string) => ((await (await queue.getJob(qid))?.getState()) === 'completed' ? queue.getJob(qid) : null);
    const stale = await waitFor(() => finished('stale-queue-job'), 10_000, 'stale queue job done', 200);
    const current = await waitFor(() => finished('current-queue-job'), 10_000, 'current queue job done', 200);
    expect(stale.returnvalue).toBe('skipped');
    expect(current.returnvalue).toBe('failed'); // it ran: this worker has no such model
    expect(await row(j.id)).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'model_not_available' } });
  });
});
