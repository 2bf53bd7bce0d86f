/**
 * The worker registry (`workers` table): each worker process reports the device it runs jobs on at startup
 * and every heartbeat; the API plans jobs that state no device for the live workers' devices (Edge-LLM's
 * scheduling needs the device that will run the job, not the API host's).
 */
import { LIVE_HEARTBEATS, type WorkerDevice, type WorkerRecord } from '@edgetune/core';
import type { PrismaClient } from './db.js';

/** Rows whose last heartbeat is older than this are deleted by the next worker heartbeat, ms. */
export const STALE_WORKER_RETENTION_MS = 24 * 3_600_000;

const toRecord = (w: {
  id: string;
  host: string;
  pid: number;
  concurrency: number;
  memoryBudgetBytes: bigint;
  totalMemoryBytes: bigint;
  threads: number;
  backend: string;
  matmul: string;
  matmulGflops: number;
  stepTimeFactor: number | null;
  tensorHeapCeilingBytes: bigint | null;
  startedAt: Date;
  heartbeatAt: Date;
}): WorkerRecord => ({
  ...w,
  memoryBudgetBytes: Number(w.memoryBudgetBytes),
  totalMemoryBytes: Number(w.totalMemoryBytes),
  tensorHeapCeilingBytes: w.tensorHeapCeilingBytes === null ? null : Number(w.tensorHeapCeilingBytes),
});

/**
 * Records a worker's heartbeat with its device (creates its row at the first call). Also deletes rows of
 * workers not heard from for {@link STALE_WORKER_RETENTION_MS} (crashed processes never delete their own).
 */
export async function heartbeatWorker(
  db: PrismaClient,
  w: { id: string; host: string; pid: number; concurrency: number; device: WorkerDevice },
): Promise<void> {
  const data = {
    host: w.host,
    pid: w.pid,
    concurrency: w.concurrency,
    memoryBudgetBytes: BigInt(Math.round(w.device.memoryBudgetBytes)),
    totalMemoryBytes: BigInt(Math.round(w.device.totalMemoryBytes)),
    threads: w.device.threads,
    backend: w.device.backend,
    matmul: w.device.matmul,
    matmulGflops: w.device.matmulGflops,
    stepTimeFactor: w.device.stepTimeFactor,
    tensorHeapCeilingBytes: w.device.tensorHeapCeilingBytes == null ? null : BigInt(Math.round(w.device.tensorHeapCeilingBytes)),
    heartbeatAt: new Date(),
  };
  await db.worker.upsert({ where: { id: w.id }, create: { id: w.id, ...data }, update: data });
  await db.worker.deleteMany({ where: { heartbeatAt: { lt: new Date(Date.now() - STALE_WORKER_RETENTION_MS) } } });
}

/** Deletes a stopping worker's row (it takes no more jobs). */
export async function removeWorker(db: PrismaClient, id: string): Promise<void> {
  await db.worker.deleteMany({ where: { id } });
}

/** Every registered worker, newest first (live and stale). */
export async function listWorkers(db: PrismaClient): Promise<WorkerRecord[]> {
  return (await db.worker.findMany({ orderBy: [{ startedAt: 'desc' }, { id: 'asc' }] })).map(toRecord);
}

/**
 * The worker whose device a job that states none is planned for: among the live workers that reported the
 * model (BaseModel.hosts holds `worker@<host>`), else among all live workers, the one with the least memory
 * budget (any of them may take the job, so admission must hold on the smallest). Null when no worker is live.
 */
export async function planningWorker(db: PrismaClient, heartbeatMs: number, modelHosts: string[]): Promise<WorkerRecord | null> {
  const since = new Date(Date.now() - LIVE_HEARTBEATS * heartbeatMs);
  const live = (
    await db.worker.findMany({ where: { heartbeatAt: { gte: since } }, orderBy: [{ memoryBudgetBytes: 'asc' }, { id: 'asc' }] })
  ).map(toRecord);
  const withModel = live.filter((w) => modelHosts.includes(`worker@${w.host}`));
  return (withModel.length ? withModel : live)[0] ?? null;
}
