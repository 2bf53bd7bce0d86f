// Backend selection (tfjs-node-gpu > tfjs-node > wasm) and installation of our kernel overrides.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc } from '@tensorflow/tfjs-core';
// The two backends this engine runs on register themselves on import (tfjs-node registers its own), and
// TF.js's gradients and chained tensor methods come from tfjs-core's own sources, bundled at install (scripts/bundle-tfjs.mjs).
import '@tensorflow/tfjs-backend-cpu';
import '../../vendor/tfjs-extras.js';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { cpuUnsortedSegmentSum, wasmCastAlias, wasmGatherFast, wasmIdentityAlias, wasmUnsortedSegmentSum } from './kernels.js';
import { installEagerBackprop, uninstallEagerBackprop } from './backprop.js';
import { installFusedKernels } from './fused.js';
import { fastWasmBatchMatMul, fusedMatMulOverride, jsCpuBatchMatMul, nativeCpuBatchMatMul, nativeWasmBatchMatMul } from './matmul.js';
import { loadBlasAddon, loadNativeAddon, nativeLoadError } from './native.js';
import { overriddenKernels, overrideKernel, restoreAll, stockKernel } from './registry.js';
import type { BackendInfo, WasmBackend } from './types.js';
import { installXentKernels } from './xent.js';

export type { BackendInfo } from './types.js';

/** Options of `initBackend`. */
export interface InitBackendOptions {
  /** Backend to use; 'auto' (default) = tfjs-node-gpu, else tfjs-node, else wasm. Overridden by EDGETUNE_BACKEND. */
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  /** Use the native addon (OpenBLAS matmul, fused kernels) when it loads (default true). EDGETUNE_NATIVE=0 forces false. */
  native?: boolean;
  /** OpenBLAS threads (default: EDGETUNE_BLAS_THREADS, else OPENBLAS_NUM_THREADS, else os.availableParallelism()). */
  blasThreads?: number;
  /**
   * Threads of the fused native kernels (fused.ts; default: EDGETUNE_FUSED_THREADS, else the BLAS
   * threads, at most 4). 1 keeps them on the calling thread.
   */
  fusedThreads?: number;
  /** Do not log the one-line summary to stderr. */
  quiet?: boolean;
}

type BackendChoice = NonNullable<InitBackendOptions['backend']>;
interface Resolved {
  backend: BackendChoice;
  native: boolean;
  blasThreads: number;
  fusedThreads: number;
  eagerBackprop: boolean;
}

const CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu'];
const NODE_BACKENDS = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

let current: { key: string; info: BackendInfo } | null = null;
let queue: Promise<unknown> = Promise.resolve();
let wasmPathsSet = false;

/** Applies the environment: EDGETUNE_BACKEND and EDGETUNE_NATIVE=0 win over options (they force). */
function resolve(opts: InitBackendOptions): Resolved {
  const env = process.env.EDGETUNE_BACKEND?.trim();
  if (env && !CHOICES.includes(env as BackendChoice)) {
    throw new Error(`EDGETUNE_BACKEND=${env}: expected one of ${CHOICES.join(', ')}`);
  }
  const backend = (env || opts.backend || 'auto') as BackendChoice;
  if (!CHOICES.includes(backend)) throw new Error(`initBackend: unknown backend '${backend}', expected one of ${CHOICES.join(', ')}`);
  const native = opts.native !== false && process.env.EDGETUNE_NATIVE !== '0';
  const envValue = process.env.EDGETUNE_BLAS_THREADS || process.env.OPENBLAS_NUM_THREADS;
  const envThreads = envValue ? Number(envValue) : undefined;
  const blasThreads = opts.blasThreads ?? envThreads ?? availableParallelism();
  if (!Number.isInteger(blasThreads) || blasThreads < 1) {
    throw new Error(`initBackend: blasThreads must be a positive integer, got ${blasThreads}`);
  }
  const fusedEnv = process.env.EDGETUNE_FUSED_THREADS ? Number(process.env.EDGETUNE_FUSED_THREADS) : undefined;
  const fusedThreads = opts.fusedThreads ?? fusedEnv ?? Math.min(blasThreads, 4);
  if (!Number.isInteger(fusedThreads) || fusedThreads < 1 || fusedThreads > 64) {
    throw new Error(`initBackend: fusedThreads must be an integer in [1, 64], got ${fusedThreads}`);
  }
  const eagerBackprop = process.env.EDGETUNE_EAGER_BACKPROP !== '0';
  return { backend, native, blasThreads, fusedThreads, eagerBackprop };
}

/**
 * Selects and initializes the TF.js backend and installs our kernels (see BackendInfo.kernels).
 *
 * - 'auto': @tensorflow/tfjs-node-gpu, else @tensorflow/tfjs-node (backend 'tensorflow', used
 *   as-is when installed), else 'wasm' with our kernels. 'wasm'/'cpu'/'tensorflow' pick one.
 * - wasm and cpu get: BatchMatMul and _FusedMatMul on OpenBLAS when the addon loads and `native`
 *   is on (wasm without it: the fastmm kernel), scatter-add UnsortedSegmentSum, the fused sparse
 *   softmax cross-entropy kernels, the fused training kernels of fused.ts (the addon, with or without
 *   OpenBLAS: BackendInfo.fused), and on wasm an aliasing Identity and same-dtype Cast and a
 *   block-copy GatherV2.
 *
 * Idempotent: a second call with the same effective options returns the same object; different
 * options re-initialize (overrides are restored to stock first). Calls are serialized.
 * Environment: EDGETUNE_BACKEND=auto|wasm|cpu|tensorflow forces the backend, EDGETUNE_NATIVE=0
 * disables the addon, EDGETUNE_BLAS_THREADS (or OPENBLAS_NUM_THREADS) sets the default BLAS threads,
 * EDGETUNE_FUSED_THREADS sets the threads of the fused native kernels (default: the BLAS threads, at most 4),
 * EDGETUNE_DEBUG=1 adds why tfjs-node could not be used to the log line,
 * EDGETUNE_EAGER_BACKPROP=0 keeps the stock TF.js backward pass (default: installEagerBackprop,
 * which frees gradients and saved activations during backprop, on every backend; see backprop.ts).
 *
 * @returns the BackendInfo, also logged as one line to stderr unless `quiet`.
 * @throws Error when the requested backend cannot be initialized (including tf silently falling
 *   back to another backend), or on invalid options / environment values.
 */
export function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const run = queue.then(() => init(opts));
  queue = run.catch(() => undefined);
  return run;
}

async function init(opts: InitBackendOptions): Promise<BackendInfo> {
  const r = resolve(opts);
  const key = JSON.stringify(r);
  if (current && current.key === key && tf.getBackend() === current.info.backend) return current.info;

  let info: BackendInfo | null = null;
  let nodeError = '';
  if (r.backend === 'auto' || r.backend === 'tensorflow') {
    const res = await tryNodeBackend();
    if (typeof res === 'string') {
      nodeError = res;
      if (r.backend === 'tensorflow') {
        throw new Error(`initBackend: backend 'tensorflow' requested but it could not be initialized (${res})`);
      }
    } else {
      info = { backend: 'tensorflow', matmul: 'tfjs', fused: 'js', blasThreads: availableParallelism(), kernels: [] };
    }
  }
  if (!info) {
    const name = r.backend === 'cpu' ? 'cpu' : 'wasm';
    await activate(name);
    info = installKernels(name, r);
    if (name === 'wasm') info.simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  }
  info.eagerBackprop = r.eagerBackprop;
  if (r.eagerBackprop) installEagerBackprop();
  else uninstallEagerBackprop();
  current = { key, info };
  if (!opts.quiet) {
    const why = r.native && info.matmul !== 'openblas' && info.backend !== 'tensorflow' ? ` (native addon: ${nativeLoadError()})` : '';
    const node = r.backend === 'auto' && nodeError && process.env.EDGETUNE_DEBUG ? ` (tfjs-node: ${nodeError})` : '';
    process.stderr.write(
      `[edgetune] backend=${info.backend} matmul=${matmulPath(info)}${why} kernels=${info.kernels.join(',') || '-'}` +
        `${info.simd === undefined ? '' : ` simd=${info.simd}`} eager_backprop=${info.eagerBackprop ? 'on' : 'off'}${node}\n`,
    );
  }
  return info;
}

/** Imports tfjs-node-gpu / tfjs-node and activates 'tensorflow'. Returns an error string on failure. */
async function tryNodeBackend(): Promise<true | string> {
  const errors: string[] = [];
  for (const pkg of NODE_BACKENDS) {
    try {
      await import(/* @vite-ignore */ pkg); // registers the 'tensorflow' backend
    } catch (e) {
      errors.push(`${pkg}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    try {
      await activate('tensorflow');
      return true;
    } catch (e) {
      errors.push(`${pkg}: ${(e as Error).message}`);
    }
  }
  return errors.join('; ');
}

/** setBackend + ready, then asserts the backend really is `name` (tf falls back silently on failure). */
async function activate(name: string): Promise<void> {
  if (name === 'wasm' && !wasmPathsSet && !tf.findBackend('wasm')) {
    // Point the loader at the package's dist folder explicitly: its default (the script's directory)
    // breaks once the engine is bundled.
    let dist: string | null = null;
    try {
      dist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + sep;
    } catch {
      /* not resolvable (bundled): keep tfjs's default lookup */
    }
    if (dist) setWasmPaths(dist);
    wasmPathsSet = true;
  }
  let ok = false,
    error = '';
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (e) {
    error = `: ${(e as Error).message}`;
  }
  let got: string;
  try {
    got = tf.getBackend() ?? 'none';
  } catch {
    got = 'none';
  } // throws when no backend could start
  if (!ok || got !== name) {
    throw new Error(`initBackend: failed to initialize TF.js backend '${name}' (active backend: '${got}')${error}`);
  }
}

/** Installs our overrides on `name` ('wasm' | 'cpu') after restoring stock ones. */
function installKernels(name: 'wasm' | 'cpu', r: Resolved): BackendInfo {
  restoreAll(name);
  const stockFn = (kernel: string): KernelFunc => {
    const k = stockKernel(kernel, name);
    if (!k) throw new Error(`initBackend: stock kernel ${kernel} missing on backend ${name}`);
    return k.kernelFunc;
  };
  const addon = r.native ? loadNativeAddon() : null;
  const blas = r.native ? loadBlasAddon() : null; // the addon when it has OpenBLAS
  if (blas) blas.setThreads(r.blasThreads);
  let matmul: BackendInfo['matmul'] = 'tfjs';
  let mm: KernelFunc | null = null;
  if (blas) {
    mm = name === 'wasm' ? nativeWasmBatchMatMul(blas, stockFn('BatchMatMul')) : nativeCpuBatchMatMul(blas, stockFn('BatchMatMul'));
    matmul = 'openblas';
  } else if (name === 'wasm') {
    mm = fastWasmBatchMatMul(stockFn('BatchMatMul'));
    matmul = 'wasm-fastmm';
  } else {
    overrideKernel('BatchMatMul', 'cpu', jsCpuBatchMatMul(stockFn('BatchMatMul'))); // correctness fix only
  }
  if (mm) {
    overrideKernel('BatchMatMul', name, mm);
    if (stockKernel('_FusedMatMul', name)) {
      overrideKernel('_FusedMatMul', name, fusedMatMulOverride(name, mm, stockFn('_FusedMatMul'), name === 'wasm'));
    }
  }
  if (name === 'wasm') {
    if (!stockKernel('UnsortedSegmentSum', 'wasm')) overrideKernel('UnsortedSegmentSum', 'wasm', wasmUnsortedSegmentSum);
    overrideKernel('Identity', 'wasm', wasmIdentityAlias(stockFn('Identity')));
    overrideKernel('Cast', 'wasm', wasmCastAlias(stockFn('Cast')));
    overrideKernel('GatherV2', 'wasm', wasmGatherFast(stockFn('GatherV2')));
  } else {
    overrideKernel('UnsortedSegmentSum', 'cpu', cpuUnsortedSegmentSum(stockKernel('UnsortedSegmentSum', 'cpu')?.kernelFunc));
  }
  installXentKernels(name, addon);
  const fused = installFusedKernels(name, addon).length > 0 ? 'native' : 'js';
  addon?.setFusedThreads?.(r.fusedThreads);
  const threads = blas ? r.blasThreads : name === 'wasm' ? (tf.backend() as unknown as WasmBackend).wasm.tfjs.getThreadsCount() : 1;
  return { backend: name, matmul, fused, blasThreads: threads, kernels: overriddenKernels(name) };
}

/**
 * Which path runs the matmul and the fused kernels, as the backend line and a worker's device report
 * name it: 'openblas(2 threads)' (the addon with OpenBLAS, fused kernels included), 'wasm-fastmm
 * fused=native' (the addon without OpenBLAS), 'wasm-fastmm fused=js' (no addon), 'tfjs' (tfjs-node).
 */
export function matmulPath(info: BackendInfo): string {
  if (info.backend === 'tensorflow') return info.matmul;
  if (info.matmul === 'openblas') return `openblas(${info.blasThreads} threads)${info.fused === 'native' ? '' : ' fused=js'}`;
  return `${info.matmul} fused=${info.fused}`;
}

/** The info of the last successful `initBackend`, or null before the first one. */
export function backendInfo(): BackendInfo | null {
  return current?.info ?? null;
}

/**
 * Memory in use, in bytes: `tfBytes` = tf.memory().numBytes (live tensors), `rssBytes` = process
 * resident set size, `wasmHeapBytes` = size of the wasm linear memory (wasm backend only; it never
 * shrinks, so it is the high-water mark of the wasm heap).
 */
export function memoryStats(): { tfBytes: number; rssBytes: number; wasmHeapBytes?: number } {
  const stats: { tfBytes: number; rssBytes: number; wasmHeapBytes?: number } = {
    tfBytes: tf.memory().numBytes,
    rssBytes: process.memoryUsage.rss(),
  };
  if (tf.getBackend() === 'wasm') {
    stats.wasmHeapBytes = (tf.backend() as unknown as WasmBackend).wasm.HEAPU8.buffer.byteLength;
  }
  return stats;
}
