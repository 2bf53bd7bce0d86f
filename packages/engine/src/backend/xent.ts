// Fused sparse softmax cross-entropy: the LM loss without a [N, V] one-hot or log-softmax tensor.
//
// loss = (1 / C) * sum over counted rows i of (logsumexp(z_i) - z_i[y_i]),  C = #rows with y_i != -100
// dloss/dz_ij = (softmax(z_i)_j - [j == y_i]) / C for counted rows, 0 for ignored rows
// (standard softmax cross-entropy gradient, e.g. Goodfellow et al., Deep Learning, sec. 6.2.2.3;
// ignore_index = -100 as in PyTorch's F.cross_entropy).
//
// Forward kernel: per row max, sum of exp, loss; outputs the loss and the per-row logsumexp
// (N floats). Backward kernel: recomputes softmax from the saved logits and logsumexp and writes the
// gradient in one pass; nothing of size [N, V] is kept between forward and backward. The row loops
// run in C (native/blas_addon.c, vectorized exp) when the addon is loaded, else in JS (much slower).
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { loadNativeAddon } from './native.js';
import type { BlasAddon } from './native.js';
import { overrideKernel } from './registry.js';
import type { CpuBackend, KernelArgs, WasmBackend } from './types.js';
import { IGNORE_INDEX } from '@edgetune/core';

/** Kernel names (registered for 'wasm' and 'cpu'). */
export const XENT_KERNEL = 'EdgetuneSparseSoftmaxXent';
export const XENT_GRAD_KERNEL = 'EdgetuneSparseSoftmaxXentGrad';

/** Throws unless every label is IGNORE_INDEX or in [0, V). */
function checkLabels(labels: Int32Array, N: number, V: number): void {
  for (let i = 0; i < N; i++) {
    const y = labels[i];
    if (y !== IGNORE_INDEX && !(y >= 0 && y < V)) {
      throw new RangeError(`sparseSoftmaxCrossEntropy: label ${y} at row ${i} is outside [0, ${V}) and is not ${IGNORE_INDEX}`);
    }
  }
}

/**
 * Forward pass over row-major logits [N, V]. Writes logsumexp of counted rows into `lse` (ignored
 * rows are skipped and get 0). Sums in float64. Returns the summed loss and the counted rows.
 */
export function xentForward(z: Float32Array, labels: Int32Array, N: number, V: number, lse: Float32Array): { sum: number; count: number } {
  let sum = 0,
    count = 0;
  for (let i = 0; i < N; i++) {
    const y = labels[i];
    if (y === IGNORE_INDEX) {
      lse[i] = 0;
      continue;
    }
    const base = i * V,
      end = base + V;
    let m = -Infinity;
    for (let j = base; j < end; j++) if (z[j] > m) m = z[j];
    let s = 0;
    for (let j = base; j < end; j++) s += Math.exp(z[j] - m);
    const l = m + Math.log(s);
    lse[i] = l;
    sum += l - z[base + y];
    count++;
  }
  return { sum, count };
}

/** Backward pass: g[i, j] = scale * (exp(z[i, j] - lse[i]) - [j == y_i]); ignored rows get 0. */
export function xentBackward(
  z: Float32Array,
  labels: Int32Array,
  lse: Float32Array,
  N: number,
  V: number,
  scale: number,
  g: Float32Array,
): void {
  for (let i = 0; i < N; i++) {
    const y = labels[i],
      base = i * V,
      end = base + V;
    if (y === IGNORE_INDEX || scale === 0) {
      g.fill(0, base, end);
      continue;
    }
    const l = lse[i];
    for (let j = base; j < end; j++) g[j] = scale * Math.exp(z[j] - l);
    g[base + y] -= scale;
  }
}

function countRows(labels: Int32Array): number {
  let c = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] !== IGNORE_INDEX) c++;
  return c;
}

function xentShapes(logits: TensorInfo, labels: TensorInfo): [number, number] {
  if (logits.shape.length !== 2 || logits.dtype !== 'float32') {
    throw new Error(`sparseSoftmaxCrossEntropy: logits must be float32 [N, V], got ${logits.dtype} [${logits.shape}]`);
  }
  const [N, V] = logits.shape;
  if (labels.shape.length !== 1 || labels.shape[0] !== N || labels.dtype !== 'int32') {
    throw new Error(`sparseSoftmaxCrossEntropy: labels must be int32 [${N}], got ${labels.dtype} [${labels.shape}]`);
  }
  return [N, V];
}

function need(args: KernelArgs, ...names: string[]): TensorInfo[] {
  return names.map((n) => {
    const t = args.inputs[n];
    if (!t) throw new Error(`${XENT_KERNEL}: input ${n} is required`);
    return t;
  });
}

// Storage access per backend: typed-array views of a tensor and output allocation.
interface Storage {
  f32(t: TensorInfo, n: number): Float32Array;
  i32(t: TensorInfo, n: number): Int32Array;
  /** Allocates a float32 output. On wasm, views taken before this call may be detached (heap growth). */
  alloc(shape: number[]): TensorInfo;
}

function wasmStorage(b: WasmBackend): Storage {
  const off = (t: TensorInfo) => b.dataIdMap.get(t.dataId)!.memoryOffset;
  return {
    f32: (t, n) => new Float32Array(b.wasm.HEAPU8.buffer, off(t), n),
    i32: (t, n) => new Int32Array(b.wasm.HEAPU8.buffer, off(t), n),
    alloc: (shape) => b.makeOutput(shape, 'float32'),
  };
}

function cpuStorage(b: CpuBackend): Storage {
  const values = <T>(t: TensorInfo, ctor: new (...a: never[]) => T): T => {
    const v = b.data.get(t.dataId)?.values;
    if (!(v instanceof ctor)) throw new Error(`${XENT_KERNEL} (cpu): unexpected storage for a ${t.dtype} tensor`);
    return v;
  };
  return {
    f32: (t) => values(t, Float32Array),
    i32: (t) => values(t, Int32Array),
    alloc: (shape) => b.makeTensorInfo(shape, 'float32', new Float32Array(tf.util.sizeFromShape(shape))),
  };
}

/** Forward kernel: outputs [loss (scalar), lse [N]]; native loops when `blas` has them. */
function xentKernel(storage: (backend: object) => Storage, blas: BlasAddon | null): KernelFunc {
  return ((args: KernelArgs) => {
    const [logits, labels] = need(args, 'logits', 'labels');
    const [N, V] = xentShapes(logits, labels);
    const s = storage(args.backend);
    checkLabels(s.i32(labels, N), N, V); // before allocating, so a throw leaks nothing
    const loss = s.alloc([]),
      lse = s.alloc([N]);
    // Views only after the allocations (wasm heap growth detaches older views).
    const z = s.f32(logits, N * V),
      lab = s.i32(labels, N),
      l = s.f32(lse, N);
    let sum: number;
    if (blas?.xentForward) sum = blas.xentForward(z, 0, lab, 0, l, 0, N, V, IGNORE_INDEX);
    else sum = xentForward(z, lab, N, V, l).sum;
    const count = countRows(lab);
    s.f32(loss, 1)[0] = count > 0 ? sum / count : 0;
    return [loss, lse];
  }) as KernelFunc;
}

/** Backward kernel: inputs dy (scalar), logits, labels, lse; output dlogits [N, V]. */
function xentGradKernel(storage: (backend: object) => Storage, blas: BlasAddon | null): KernelFunc {
  return ((args: KernelArgs) => {
    const [dy, logits, labels, lse] = need(args, 'dy', 'logits', 'labels', 'lse');
    const [N, V] = xentShapes(logits, labels);
    const s = storage(args.backend);
    const g = s.alloc([N, V]);
    const lab = s.i32(labels, N),
      count = countRows(lab);
    const scale = count > 0 ? s.f32(dy, 1)[0] / count : 0;
    const z = s.f32(logits, N * V),
      l = s.f32(lse, N),
      out = s.f32(g, N * V);
    if (blas?.xentBackward) blas.xentBackward(z, 0, lab, 0, l, 0, N, V, IGNORE_INDEX, scale, out, 0);
    else xentBackward(z, lab, l, N, V, scale, out);
    return g;
  }) as KernelFunc;
}

/** Registers the gradient of XENT_KERNEL once per process (tf warns on re-registration). */
function ensureGradient(): void {
  if (tf.getGradient(XENT_KERNEL)) return;
  tf.registerGradient({
    kernelName: XENT_KERNEL,
    inputsToSave: ['logits', 'labels'],
    outputsToSave: [false, true],
    gradFunc: (dy, saved) => {
      const [logits, labels, lse] = saved;
      const dLoss = Array.isArray(dy) ? dy[0] : dy;
      return {
        logits: () => tf.engine().runKernel(XENT_GRAD_KERNEL, { dy: dLoss, logits, labels, lse }),
        labels: () => tf.zeros(labels.shape, 'float32'),
      };
    },
  });
}

/**
 * (Re)registers the fused kernels for 'wasm' or 'cpu' and the gradient. With `blas` (the native
 * addon) the row loops run in C (vectorized exp), else in JS. Returns the kernel names.
 */
export function installXentKernels(backendName: 'wasm' | 'cpu', blas: BlasAddon | null): string[] {
  ensureGradient();
  const storage = backendName === 'wasm' ? (b: object) => wasmStorage(b as WasmBackend) : (b: object) => cpuStorage(b as CpuBackend);
  overrideKernel(XENT_KERNEL, backendName, xentKernel(storage, blas));
  overrideKernel(XENT_GRAD_KERNEL, backendName, xentGradKernel(storage, blas));
  return [XENT_KERNEL, XENT_GRAD_KERNEL];
}

/** Runs `f` on int32-cast labels and frees the cast (the tape keeps its own copy if it needs one). */
function withIntLabels(labels: tf.Tensor1D, f: (l: tf.Tensor1D) => tf.Scalar): tf.Scalar {
  const cast = tf.cast(labels, 'int32');
  try {
    return f(cast);
  } finally {
    cast.dispose();
  }
}

/**
 * The same loss composed of stock ops (logSoftmax + gather, no one-hot); used on backends without
 * our kernel (tensorflow, webgl, ...). Same contract as sparseSoftmaxCrossEntropy, except that label
 * ranges are not checked (an out-of-range label reads a wrong logit instead of throwing).
 */
export function sparseSoftmaxCrossEntropyOps(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  if (labels.dtype === 'float32') return withIntLabels(labels, (l) => sparseSoftmaxCrossEntropyOps(logits, l));
  const [N, V] = xentShapes(logits, labels);
  return tf.tidy(() => {
    const valid = tf.notEqual(labels, IGNORE_INDEX);
    const safe = tf.where(valid, labels, tf.zerosLike(labels));
    const flat = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safe); // int32 (a JS number would upcast)
    const picked = tf.gather(tf.reshape(tf.logSoftmax(logits), [-1]), flat);
    const w = tf.cast(valid, 'float32');
    return tf.div(tf.neg(tf.sum(tf.mul(picked, w))), tf.maximum(tf.sum(w), 1)) as tf.Scalar;
  });
}

/**
 * Mean softmax cross-entropy over the rows whose label is not -100:
 * mean_i (logsumexp(logits_i) - logits_i[labels_i]). Returns 0 when no row counts.
 * Differentiable w.r.t. `logits` (works inside tf.grads / tf.variableGrads / optimizer.minimize).
 *
 * On 'wasm' and 'cpu' it runs the fused kernel (one pass forward, one pass backward, no [N, V]
 * temporaries besides the gradient itself); elsewhere a logSoftmax + gather composition.
 *
 * @param logits float32 [N, V] (N rows, e.g. batch*seq tokens; V classes, e.g. the vocabulary).
 * @param labels int32 [N], values in [0, V) or -100 (ignored row). float32 labels are cast.
 * @returns scalar float32, in nats.
 * @throws Error on wrong ranks, shapes or dtypes; RangeError (fused path) on a label outside [0, V)
 *   other than -100. The composition fallback does not check label ranges.
 */
export function sparseSoftmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  if (labels.dtype === 'float32') return withIntLabels(labels, (l) => sparseSoftmaxCrossEntropy(logits, l));
  xentShapes(logits, labels);
  const backend = tf.getBackend();
  if ((backend === 'wasm' || backend === 'cpu') && !tf.getKernel(XENT_KERNEL, backend)) {
    installXentKernels(backend, loadNativeAddon()); // used without initBackend
  }
  if (!tf.getKernel(XENT_KERNEL, backend)) return sparseSoftmaxCrossEntropyOps(logits, labels);
  const [loss, lse] = tf.engine().runKernel<tf.Tensor[]>(XENT_KERNEL, { logits, labels });
  lse.dispose(); // the tape keeps its own reference for the backward pass
  return loss as tf.Scalar;
}
