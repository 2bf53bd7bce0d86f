// In-process SGEMM peak, the denominator for "training GFLOP/s as a fraction of peak".
import { performance } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadBlasAddon } from './native.js';
import type { WasmBackend } from './types.js';

/** Result of `measureSgemmPeak`. */
export interface SgemmPeak {
  /** Best observed 2*n^3 / seconds / 1e9. */
  gflops: number;
  /** 'openblas': cblas_sgemm through the addon; 'wasm': tf.matMul on the wasm backend; 'tfjs': tf.matMul on another backend. */
  source: 'openblas' | 'wasm' | 'tfjs';
  n: number;
  threads: number;
}

/**
 * Measures the machine's single-precision GEMM peak: C = A*B on n x n float32 matrices, best time of
 * repeated runs after one warm-up, GFLOP/s = 2*n^3 / t / 1e9 (the usual GEMM flop count: n^2 dot
 * products of n multiply-adds).
 *
 * With the native addon it calls OpenBLAS directly (`threads` BLAS threads, default: the threads
 * set by initBackend, else OpenBLAS's default of all cores), restoring the previous thread count afterwards. Without it,
 * it times tf.matMul on the active backend (initialize it first; wasm runs one thread in Node).
 * Synchronous; runs for about `seconds` (at least 3 repetitions).
 *
 * @param opts.n matrix size (default 1024). @param opts.threads BLAS threads (addon only).
 * @param opts.seconds time budget in seconds (default 1).
 * @throws Error when n is not a positive integer or threads is not a positive integer.
 */
export function measureSgemmPeak(opts: { n?: number; threads?: number; seconds?: number } = {}): SgemmPeak {
  const n = opts.n ?? 1024,
    seconds = opts.seconds ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new Error(`measureSgemmPeak: n must be a positive integer, got ${n}`);
  const flops = 2 * n * n * n;
  const timeBest = (run: () => void): number => {
    run(); // warm-up: thread pools, page faults, XNNPACK packing
    let best = Infinity,
      reps = 0;
    const start = performance.now();
    while (reps < 3 || (performance.now() - start < seconds * 1000 && reps < 10_000)) {
      const t0 = performance.now();
      run();
      best = Math.min(best, performance.now() - t0);
      reps++;
    }
    return best / 1000;
  };
  const blas = loadBlasAddon();
  if (blas) {
    const threads = opts.threads ?? blas.getThreads();
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`measureSgemmPeak: threads must be a positive integer, got ${threads}`);
    const A = new Float32Array(n * n),
      B = new Float32Array(n * n),
      C = new Float32Array(n * n);
    for (let i = 0; i < A.length; i++) {
      A[i] = ((i * 7) % 13) / 13 - 0.5;
      B[i] = ((i * 5) % 11) / 11 - 0.5;
    }
    const prev = blas.getThreads();
    blas.setThreads(threads);
    try {
      const t = timeBest(() => blas.sgemm(A, 0, B, 0, C, 0, n, n, n, false, false, 1, 0, 0, 0));
      return { gflops: flops / t / 1e9, source: 'openblas', n, threads };
    } finally {
      blas.setThreads(prev);
    }
  }
  const backend = tf.getBackend();
  const sync = backend === 'wasm' || backend === 'cpu'; // kernels run synchronously; skip the read-back
  const [a, b] = tf.tidy(() => [tf.randomUniform([n, n], -0.5, 0.5), tf.randomUniform([n, n], -0.5, 0.5)]);
  try {
    const t = timeBest(() => {
      const c = tf.matMul(a, b);
      if (!sync) c.dataSync();
      c.dispose();
    });
    const threads = backend === 'wasm' ? (tf.backend() as unknown as WasmBackend).wasm.tfjs.getThreadsCount() : 1;
    return { gflops: flops / t / 1e9, source: backend === 'wasm' ? 'wasm' : 'tfjs', n, threads };
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** How long an SGEMM reading counts for {@link plannerSgemmPeak}, ms: long enough to outvote a probe that
 *  a burst of other load slowed, short enough to follow a machine that slows for good (planning with an
 *  old, higher best would forecast steps too short). */
export const SGEMM_MEMORY_MS = 15 * 60_000;

/**
 * The SGEMM peak the planner uses for this machine: a {@link measureSgemmPeak} of `seconds`, raised to the
 * best reading this machine gave with the same matmul source, threads and size within the last
 * {@link SGEMM_MEMORY_MS}. Other load can only slow a measurement down, so on a shared machine a single
 * short probe under-reads (and the planner then forecasts too much time): the recent maximum is the robust
 * estimate, and readings older than the window are dropped because the machine itself drifts. Kept in `$EDGETUNE_CACHE_DIR` (default the OS temp folder) as
 * `edgetune-sgemm-peak.json`; an unreadable or unwritable file just means no memory of earlier runs.
 * @param seconds measurement budget, seconds. @returns GFLOP/s and how it was measured.
 */
export function plannerSgemmPeak(seconds = 1): SgemmPeak {
  const now = measureSgemmPeak({ seconds });
  return { ...now, gflops: recordSgemmPeak(now) };
}

/**
 * Adds a reading to the machine's SGEMM memory used by {@link plannerSgemmPeak} (e.g. the benchmark's
 * one-second measurement, so that its child runs plan with it).
 * @param atMs when it was measured, ms since the epoch (default now).
 * @returns the best reading within the last {@link SGEMM_MEMORY_MS} for that matmul source, threads and
 * size (this one included), GFLOP/s.
 */
export function recordSgemmPeak(now: SgemmPeak, atMs = Date.now()): number {
  const key = `${now.source}:${now.threads}:${now.n}:${cpus()[0]?.model ?? '?'}:${hostname()}`;
  return Math.max(...recentReadings(key, now.gflops, atMs));
}

/**
 * Adds `value` to this machine's readings under `key` (`$EDGETUNE_CACHE_DIR/edgetune-sgemm-peak.json`) and
 * returns the readings of the last {@link SGEMM_MEMORY_MS}, this one included (never empty). An unreadable
 * or unwritable file just means no memory of earlier readings.
 * @param atMs when it was measured, ms since the epoch.
 */
export function recentReadings(key: string, value: number, atMs = Date.now()): number[] {
  const file = join(process.env.EDGETUNE_CACHE_DIR ?? tmpdir(), 'edgetune-sgemm-peak.json');
  let seen: Record<string, unknown> = {};
  try {
    seen = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    /* first run */
  }
  // [value, ms since the epoch] pairs; anything else (the older single-number form) is forgotten.
  const kept = (Array.isArray(seen[key]) ? (seen[key] as unknown[]) : []).filter(
    (r): r is [number, number] =>
      Array.isArray(r) && Number.isFinite(r[0]) && Number.isFinite(r[1]) && atMs - r[1] < SGEMM_MEMORY_MS && r[1] <= atMs + SGEMM_MEMORY_MS,
  );
  try {
    writeFileSync(file, JSON.stringify({ ...seen, [key]: [...kept, [value, atMs]].slice(-64) }));
  } catch {
    /* read-only: fine */
  }
  return [...kept.map((r) => r[0]), value];
}
