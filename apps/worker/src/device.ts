/**
 * This worker's device as the engine's planner sees it (memory budget, threads, backend and its TF.js heap
 * ceiling, measured SGEMM GFLOP/s), reported in `workers` so that the API plans jobs for it (the report's shape:
 * packages/core/src/service/workers.ts; the table: packages/store/src/workers.ts).
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { freemem, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { tensorHeapCeilingOf, type Config, type WorkerDevice } from '@edgetune/core';

/** What the engine's `device` command measures once at startup (the rest is read at every heartbeat). */
export interface ProbedDevice {
  threads: number;
  backend: string;
  matmul: string;
  matmulGflops: number;
  /** measured step-time factor (packages/engine/src/schedule/speed.ts) */
  stepTimeFactor: number;
  /** the backend's hard limit on TF.js tensor memory, bytes (wasm: 4294901760); undefined: none */
  tensorHeapCeilingBytes?: number;
}

/**
 * Runs `edgetune-engine device` in a child process (the worker's own process never loads TF.js: its
 * sandboxed processors do) and returns its measurements: TF.js backend, matmul implementation and threads,
 * a one-second SGEMM reading (raised to the best of the last 15 minutes, packages/engine/src/backend/peak.ts)
 * and the step-time factor of a reference training workload (packages/engine/src/schedule/speed.ts).
 * @throws Error when the engine cannot start or prints no profile (the message has its stderr).
 */
export async function probeDevice(timeoutMs = 60_000): Promise<ProbedDevice> {
  const bin = join(dirname(fileURLToPath(import.meta.resolve('@edgetune/engine'))), '..', 'bin', 'edgetune-engine.js');
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [bin, 'device'], { timeout: timeoutMs, encoding: 'utf8' }, (err, out, errOut) => {
      if (err) reject(new Error(`edgetune-engine device failed: ${err.message}${errOut ? `\n${errOut.trim()}` : ''}`));
      else resolve(out);
    });
  });
  const d = JSON.parse(stdout) as ProbedDevice;
  if (!(d.matmulGflops > 0) || !(d.threads >= 1) || !(d.stepTimeFactor > 0))
    throw new Error(`edgetune-engine device printed no usable profile: ${stdout.slice(0, 200)}`);
  // the engine states its backend's ceiling; an engine that does not is known by its backend's name
  const ceiling = d.tensorHeapCeilingBytes ?? tensorHeapCeilingOf(d.backend);
  return {
    threads: d.threads,
    backend: d.backend,
    matmul: d.matmul,
    matmulGflops: d.matmulGflops,
    stepTimeFactor: d.stepTimeFactor,
    ...(ceiling !== undefined ? { tensorHeapCeilingBytes: ceiling } : {}),
  };
}

/**
 * The memory budget of a job that states none, bytes: EDGETUNE_DEVICE_MEMORY_BYTES, else this host's free
 * memory now. One definition for the device report (read while idle) and the job's own plan (job/tune.ts).
 */
export function defaultMemoryBudget(config: Pick<Config, 'deviceMemoryBytes'>): number {
  return config.deviceMemoryBytes ?? freemem();
}

/**
 * The device a job that states none runs on here, as the job's own run plans it (job/tune.ts): the
 * EDGETUNE_DEVICE_* settings over the probe, and this host's free memory now.
 */
export function workerDevice(
  config: Pick<Config, 'deviceMemoryBytes' | 'deviceThreads' | 'deviceGflops'>,
  probed: ProbedDevice,
): WorkerDevice {
  return {
    memoryBudgetBytes: defaultMemoryBudget(config),
    totalMemoryBytes: totalmem(),
    threads: config.deviceThreads ?? probed.threads,
    backend: probed.backend,
    matmul: probed.matmul,
    matmulGflops: config.deviceGflops ?? probed.matmulGflops,
    // measured against the probe's own SGEMM reading: meaningless with another throughput
    stepTimeFactor: config.deviceGflops ? null : probed.stepTimeFactor,
    tensorHeapCeilingBytes: probed.tensorHeapCeilingBytes ?? null,
  };
}
