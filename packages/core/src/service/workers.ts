/**
 * A worker's device report (the `workers` table) and when a worker counts as live: the planner sizes jobs
 * that state no device for the device of the worker that will run them.
 */

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
  /**
   * the backend's hard limit on TF.js tensor memory, bytes (DeviceProfile.tensorHeapCeilingBytes: 4294901760
   * for wasm, schedule/planner.ts tensorHeapCeilingOf); null: none (cpu, tensorflow)
   */
  tensorHeapCeilingBytes: number | null;
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

/** A worker counts as live while its last heartbeat is at most this many heartbeat intervals old. */
export const LIVE_HEARTBEATS = 3;

/** Whether a worker's last heartbeat is recent enough for it to count as live. */
export function isLive(w: Pick<WorkerRecord, 'heartbeatAt'>, heartbeatMs: number, now = Date.now()): boolean {
  return now - w.heartbeatAt.getTime() <= LIVE_HEARTBEATS * heartbeatMs;
}
