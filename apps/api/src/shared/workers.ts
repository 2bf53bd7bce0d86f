/**
 * The worker registry (`workers` table): each worker process reports the device it runs jobs on at startup
 * and every heartbeat; the API plans jobs that state no device for the live workers' devices (Edge-LLM's
 * scheduling needs the device that will run the job, not the API host's: DESIGN.md, issue 4 point 6).
 */
import type { PrismaClient } from './db.js';

/** A worker's device as it reports it. Bytes, GFLOP/s. */
export interface WorkerDevice {
  /** bytes a job may use (EDGETUNE_DEVICE_MEMORY_BYTES, else free memory when last idle) */
  memoryBudgetBytes: number;
  totalMemoryBytes: number;
  /** threads the engine's matmuls use */
  threads: number;
  /** TF.js backend name, e.g. `wasm` */
  backend: string;
  /** what runs the matmuls, e.g. `openblas(2 threads)` */
  matmul: string;
  /** measured SGEMM throughput, GFLOP/s */
  matmulGflops: number;
  /** measured step-time factor (engine DeviceProfile.stepTimeFactor); null: not measured */
  stepTimeFactor: number | null;
}

/** A row of `workers` as the API reads it. */
export interface WorkerRecord extends WorkerDevice {
  id: string;
  host: string;
  pid: number;
  concurrency: number;
  startedAt: Date;
  heartbeatAt: Date;
}

/** Rows whose last heartbeat is older than this are deleted by the next worker heartbeat, ms. */
export const STALE_WORKER_RETENTION_MS = 24 * 3_600_000;

/** A worker counts as live while its last heartbeat is at most this many heartbeat intervals old. */
export const LIVE_HEARTBEATS = 3;

const toRecord = (w: { id: string; host: string; pid: number; concurrency: number; memoryBudgetBytes: bigint; totalMemoryBytes: bigint; threads: number; backend: string; matmul: string; matmulGflops: number; stepTimeFactor: number | null; startedAt: Date; heartbeatAt: Date }): WorkerRecord => ({
  ...w, memoryBudgetBytes: Number(w.memoryBudgetBytes), totalMemoryBytes: Number(w.totalMemoryBytes),
});

/**
 * Records a worker's heartbeat with its device (creates its row at the first call). Also deletes rows of
 * workers not heard from for {@link STALE_WORKER_RETENTION_MS} (crashed processes never delete their own).
 */
export async function heartbeatWorker(db: PrismaClient, w: { id: string; host: string; pid: number; concurrency: number; device: WorkerDevice }): Promise<void> {
  const data = {
    host: w.host, pid: w.pid, concurrency: w.concurrency,
    memoryBudgetBytes: BigInt(Math.round(w.device.memoryBudgetBytes)), totalMemoryBytes: BigInt(Math.round(w.device.totalMemoryBytes)),
    threads: w.device.threads, backend: w.device.backend, matmul: w.device.matmul, matmulGflops: w.device.matmulGflops,
    stepTimeFactor: w.device.stepTimeFactor, heartbeatAt: new Date(),
  };
  await db.worker.upsert({ where: { id: w.id }, create: { id: w.id, ...data }, update: data });
  await db.worker.deleteMany({ where: { heartbeatAt: { lt: new Date(Date.now() - STALE_WORKER_RETENTION_MS) } } });
}

/** Deletes a stopping worker's row (it takes no more jobs). */
export async function removeWorker(db: PrismaClient, id: string): Promise<void> {
  await db.worker.deleteMany({ where: { id } });
}

/** Whether a worker's last heartbeat is recent enough for it to count as live. */
export function isLive(w: Pick<WorkerRecord, 'heartbeatAt'>, heartbeatMs: number, now = Date.now()): boolean {
  return now - w.heartbeatAt.getTime() <= LIVE_HEARTBEATS * heartbeatMs;
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
  const live = (await db.worker.findMany({ where: { heartbeatAt: { gte: since } }, orderBy: [{ memoryBudgetBytes: 'asc' }, { id: 'asc' }] })).map(toRecord);
  const withModel = live.filter((w) => modelHosts.includes(`worker@${w.host}`));
  return (withModel.length ? withModel : live)[0] ?? null;
}
