/**
 * Counts the floating-point work of matrix products as it runs: wraps the active backend's
 * `BatchMatMul` and `_FusedMatMul` kernels (public getKernel/registerKernel API) and adds
 * 2*M*N*K per output matrix, forward and backward alike. Used by the benchmark to report achieved
 * GFLOP/s against the machine's SGEMM peak.
 */
import * as tf from '@tensorflow/tfjs-core';

let flops = 0;
const wrapped = new Set<string>();

/** Installs the counting wrappers on the current backend (idempotent). */
export function instrumentMatMulFlops(): void {
  const backend = tf.getBackend();
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    const key = `${name}:${backend}`;
    if (wrapped.has(key)) continue;
    const k = tf.getKernel(name, backend);
    if (!k) continue;
    const inner = k.kernelFunc;
    tf.unregisterKernel(name, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
        const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
        const ar = a.shape.length,
          br = b.shape.length;
        const M = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
        const K = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
        const N = transposeB ? b.shape[br - 2] : b.shape[br - 1];
        const batch = Math.max(tf.util.sizeFromShape(a.shape.slice(0, -2)), tf.util.sizeFromShape(b.shape.slice(0, -2)));
        flops += 2 * M * N * K * batch;
        return inner(args);
      },
    });
    wrapped.add(key);
  }
}

/** Matmul FLOPs counted since the process started (or the last reset). */
export function matmulFlops(): number {
  return flops;
}

export function resetMatmulFlops(): void {
  flops = 0;
}
