// Frozen weights outside the TF.js heap, in their stored precision.
//
// Why: the wasm heap cannot exceed 4 GiB (tfjs-backend-wasm's getHeapMax), and a 1 B-parameter model is
// 4.4 GB in float32. A frozen weight never changes, so it needs no tensor: it stays in Node memory as its
// safetensors bytes (BF16/F16/F32) or LUC-packed integers (compress/quantize.ts), and a linear over it
// widens one block of rows at a time (native/frozen.c, with OpenBLAS) or, without the addon, one weight
// at a time into a transient float32 tensor that is freed right after its product.
import * as tf from '@tensorflow/tfjs-core';
import { closeSync, openSync, readSync } from 'node:fs';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { PackedWeight } from '../compress/quantize.js';
import { dequantizeWeight } from '../compress/quantize.js';
import { floatToHalf, halfToFloatTable } from '../io/safetensors.js';
import { customOp, dropout, dropoutSeed, FUSED_KERNELS, fusedKernelsActive, kernelMem, type LoraLinearOptions } from './fused.js';
import { loadNativeAddon, type BlasAddon } from './native.js';
import type { KernelArgs } from './types.js';

/** Stored float dtypes a frozen matrix keeps (safetensors names). */
export type StoredFloatDtype = 'F32' | 'BF16' | 'F16';

/** A frozen [rows, cols] float matrix in its stored precision (HF layout [out, in] for linears, [vocab, hidden] for embeddings). */
export interface StoredMatrix {
  dtype: StoredFloatDtype;
  rows: number;
  cols: number;
  /** row-major; Float32Array for F32, Uint16Array bit patterns for BF16 and F16 */
  data: Float32Array | Uint16Array;
}

/**
 * A frozen float matrix still in its safetensors file, read in its stored precision each time it is used:
 * what a model that is about to be compressed holds, so that its 16-bit weights are never all in memory
 * (LUC reads each layer when it reaches it and keeps only the packed result).
 */
export interface FileMatrix {
  dtype: StoredFloatDtype;
  rows: number;
  cols: number;
  file: string;
  /** absolute byte offset of the data in `file` */
  begin: number;
}

/** A frozen matrix outside the heap: stored floats (in memory or in their file) or LUC-packed integers. */
export type FrozenMatrix = StoredMatrix | PackedWeight | FileMatrix;

/** Whether a frozen matrix is still in its file. */
export function isFileMatrix(w: WeightMatrix): w is FileMatrix {
  return !isTensor(w) && 'file' in w;
}

/**
 * A frozen matrix in memory: itself, or a file matrix's bytes read now (a new buffer each call).
 * @throws Error when the file is shorter than the matrix.
 */
export function resident(w: FrozenMatrix): StoredMatrix | PackedWeight {
  if (!('file' in w)) return w;
  const bytes = new Uint8Array(w.rows * w.cols * (w.dtype === 'F32' ? 4 : 2));
  const fd = openSync(w.file, 'r');
  try {
    let at = 0;
    while (at < bytes.byteLength) {
      const n = readSync(fd, bytes, at, Math.min(bytes.byteLength - at, 2 ** 30), w.begin + at);
      if (n <= 0) throw new Error(`${w.file}: ends before the ${w.rows} x ${w.cols} ${w.dtype} matrix at byte ${w.begin}`);
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  const data = w.dtype === 'F32' ? new Float32Array(bytes.buffer) : new Uint16Array(bytes.buffer);
  return { dtype: w.dtype, rows: w.rows, cols: w.cols, data };
}

/** A weight that is either a tensor in the heap or a frozen matrix outside it. */
export type WeightMatrix = tf.Tensor2D | FrozenMatrix;

/** Whether a weight is a TF.js tensor (in the heap). */
export function isTensor(w: WeightMatrix): w is tf.Tensor2D {
  return w instanceof tf.Tensor;
}

/** [rows, cols] of any weight. */
export function matrixShape(w: WeightMatrix): [number, number] {
  return isTensor(w) ? (w.shape as [number, number]) : [w.rows, w.cols];
}

/** Bytes a frozen matrix occupies outside the heap (data + scales); 0 for a tensor. */
export function frozenBytes(w: WeightMatrix): number {
  if (isTensor(w) || 'file' in w) return 0;
  return w.data.byteLength + ('scales' in w ? w.scales.byteLength : 0);
}

/** frozen.c's format code of a frozen matrix in memory. */
function formatOf(w: StoredMatrix | PackedWeight): number {
  if ('bits' in w) return w.bits === 8 ? 3 : 4;
  return w.dtype === 'F32' ? 0 : w.dtype === 'BF16' ? 1 : 2;
}

/** BF16 / F16 bit patterns -> float32 (JS). */
export function widen16(data: Uint16Array, dtype: 'BF16' | 'F16', out = new Float32Array(data.length)): Float32Array {
  if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer, out.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) u[i] = data[i] << 16;
  } else {
    const t = halfToFloatTable();
    for (let i = 0; i < data.length; i++) out[i] = t[data[i]];
  }
  return out;
}

/** float32 -> BF16 bit patterns, round to nearest even (as torch's `.to(torch.bfloat16)`). */
export function narrowBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length),
    out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = u[i];
    out[i] = (v & 0x7fffffff) > 0x7f800000 ? (v >>> 16) | 0x40 : (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** float32 -> IEEE half bit patterns, round to nearest even. */
export function narrowF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = floatToHalf(x[i]);
  return out;
}

/** A frozen matrix widened to float32 [rows * cols] (a fresh array). */
export function widenAll(m: FrozenMatrix): Float32Array {
  const w = resident(m);
  if ('bits' in w) return dequantizeWeight(w);
  if (w.dtype === 'F32') return (w.data as Float32Array).slice();
  const addon = frozenAddon();
  const out = new Float32Array(w.rows * w.cols);
  if (addon) addon.widenRows(w.data as Uint16Array, formatOf(w), w.rows, w.cols, null, 0, 0, w.rows, out, 0);
  else widen16(w.data as Uint16Array, w.dtype, out);
  return out;
}

/** Rows [r0, r0 + count) of a frozen matrix widened to float32 [count * cols]. */
export function widenRowsBlock(m: FrozenMatrix, r0: number, count: number): Float32Array {
  const w = resident(m);
  const { cols } = w;
  if ('bits' in w) {
    // Only the rows asked for: their bytes and scales form a packed matrix of their own (nibble rows start on a
    // byte when r0 * cols is even; otherwise the whole matrix is dequantized).
    const g = w.scales.length / w.rows;
    if (w.bits !== 8 && (r0 * cols) % 2) return dequantizeWeight(w).slice(r0 * cols, (r0 + count) * cols);
    const data =
      w.bits === 8
        ? w.data.subarray(r0 * cols, (r0 + count) * cols)
        : w.data.subarray((r0 * cols) / 2, Math.ceil(((r0 + count) * cols) / 2));
    return dequantizeWeight({ ...w, rows: count, data, scales: w.scales.subarray(r0 * g, (r0 + count) * g) });
  }
  if (w.dtype === 'F32') return (w.data as Float32Array).slice(r0 * cols, (r0 + count) * cols);
  return widen16((w.data as Uint16Array).subarray(r0 * cols, (r0 + count) * cols), w.dtype);
}

/**
 * Rows `ids` of a frozen matrix as float32 [ids.length, cols] (an embedding lookup, `nn.Embedding`).
 * @throws RangeError for an id outside [0, rows).
 */
export function gatherRows(m: FrozenMatrix, ids: ArrayLike<number>): Float32Array {
  const w = resident(m);
  const { rows, cols } = w;
  const out = new Float32Array(ids.length * cols);
  const addon = frozenAddon();
  const packed = 'bits' in w ? w : null;
  for (let i = 0; i < ids.length; i++) {
    const r = ids[i];
    if (!(r >= 0 && r < rows && Number.isInteger(r))) throw new RangeError(`token id ${r} outside the embedding's ${rows} rows`);
    if (addon && (packed || (w as StoredMatrix).dtype !== 'F32'))
      addon.widenRows(w.data as Uint16Array, formatOf(w), rows, cols, packed?.scales ?? null, packed?.groupSize ?? 0, r, 1, out, i * cols);
    else out.set(widenRowsBlock(w, r, 1), i * cols);
  }
  return out;
}

type FrozenAddon = Required<Pick<BlasAddon, 'frozenLinear' | 'widenRows'>>;
let addonCache: FrozenAddon | null | undefined;
let nativeAllowed = true;

/**
 * Turns the native frozen-weight kernels off (false: every product goes through a transient float32
 * tensor, as without the addon) or back on. For comparing the two paths; the default is on.
 */
export function setFrozenNative(on: boolean): void {
  nativeAllowed = on;
}

/** The addon when it has the frozen-weight kernels (and they are allowed), else null. */
function frozenAddon(): FrozenAddon | null {
  if (!nativeAllowed) return null;
  if (addonCache === undefined) {
    const a = loadNativeAddon();
    addonCache = a && typeof a.frozenLinear === 'function' && typeof a.widenRows === 'function' ? (a as FrozenAddon) : null;
  }
  return addonCache;
}

/** Kernel name of the native frozen linear (registered for 'wasm' and 'cpu' on first use). */
export const FROZEN_LINEAR_KERNEL = 'EdgetuneFrozenLinear';
const registered = new Set<string>();

function frozenKernel(backendName: 'wasm' | 'cpu', addon: FrozenAddon): KernelFunc {
  const mem = kernelMem(backendName);
  return ((args: KernelArgs) => {
    const x = args.inputs.x as TensorInfo;
    const w = args.attrs?.w as unknown as StoredMatrix | PackedWeight;
    const transposed = !!args.attrs?.transposed;
    const [n, inDim] = x.shape;
    const outDim = transposed ? w.cols : w.rows;
    if (inDim !== (transposed ? w.rows : w.cols))
      throw new Error(`${FROZEN_LINEAR_KERNEL}: x [${x.shape}] does not fit weight [${w.rows}, ${w.cols}]`);
    const m = mem(args.backend);
    const y = m.alloc([n, outDim]);
    // Views only after the allocation: growing the wasm heap detaches older ones.
    const [xa, xo] = m.f32(x),
      [ya, yo] = m.f32(y);
    const packed = 'bits' in w ? w : null;
    addon.frozenLinear(xa, xo, n, w.data, formatOf(w), w.rows, w.cols, packed?.scales ?? null, packed?.groupSize ?? 0, ya, yo, transposed);
    return y;
  }) as KernelFunc;
}

/** Whether frozen linears run natively on the current backend (else a transient float32 tensor per product). */
export function frozenKernelActive(): boolean {
  const b = tf.getBackend();
  return (b === 'wasm' || b === 'cpu') && frozenAddon() !== null;
}

/** x [n, a] times the frozen weight (transposed: x W, else x W^T), natively or through a transient tensor. */
function frozenProduct(x: tf.Tensor2D, w: StoredMatrix | PackedWeight, transposed: boolean): tf.Tensor2D {
  const addon = frozenAddon();
  const b = tf.getBackend();
  if (addon && (b === 'wasm' || b === 'cpu')) {
    if (!registered.has(b)) {
      tf.registerKernel({ kernelName: FROZEN_LINEAR_KERNEL, backendName: b, kernelFunc: frozenKernel(b, addon) });
      registered.add(b);
    }
    return tf
      .engine()
      .runKernel(FROZEN_LINEAR_KERNEL, { x } as tf.NamedTensorMap, { w, transposed } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
  }
  return tf.tidy(() => tf.matMul(x, tf.tensor2d(widenAll(w), [w.rows, w.cols]), false, !transposed));
}

/**
 * y = x W^T for a frozen W [out, in] kept outside the heap (an HF linear's forward, no bias),
 * differentiable with respect to x (dx = dy W, computed the same way). x [n, in] -> [n, out].
 * @throws Error when x's width is not W's `in`.
 */
export function frozenMatMulT(x: tf.Tensor2D, m: FrozenMatrix): tf.Tensor2D {
  // A file matrix is read once here and held by the gradient closure until backward has run.
  const w = resident(m);
  if (x.shape[1] !== w.cols) throw new Error(`frozen linear: x [${x.shape}] does not fit weight [${w.rows}, ${w.cols}]`);
  if (x.dtype !== 'float32') throw new Error(`frozen linear: x must be float32, got ${x.dtype}`);
  return customOp([x], ([xi]) => ({
    value: frozenProduct(xi as tf.Tensor2D, w, false),
    gradFunc: (dy) => [frozenProduct(dy as tf.Tensor2D, w, true)],
  })) as tf.Tensor2D;
}

/**
 * y = x W^T + scale * (dropout(x) A^T) B^T for a frozen W [out, in] kept outside the heap and trained LoRA
 * factors (PEFT LoraLayer over a frozen base linear). Differentiable w.r.t. x, A and B. With the native
 * kernels it is one op that keeps only x (alive anyway as the linear's input), A and B for backward, and
 * draws the dropout mask again from its seed there (loraLinear's dA/dB kernel): as separate ops, the sum
 * would keep both its [n, out] inputs and the branch its dropped copy of x, which made a layer over packed
 * or 16-bit weights keep ~1.6x the activations of one over float32 tensors. Without them, those ops.
 * x [n, in], a [r, in] (lora_A), b [out, r] (lora_B) -> [n, out].
 * @throws Error when the shapes do not fit.
 */
export function frozenLoraLinear(x: tf.Tensor2D, m: FrozenMatrix, a: tf.Tensor2D, b: tf.Tensor2D, o: LoraLinearOptions): tf.Tensor2D {
  const w = resident(m);
  if (x.shape[1] !== w.cols || a.shape[1] !== w.cols || b.shape[0] !== w.rows || b.shape[1] !== a.shape[0])
    throw new Error(`frozen LoRA linear: x [${x.shape}] a [${a.shape}] b [${b.shape}] do not fit weight [${w.rows}, ${w.cols}]`);
  const seed = dropoutSeed(o.seed);
  if (!frozenKernelActive() || !fusedKernelsActive()) {
    const xin = o.dropout > 0 ? dropout(x, o.dropout, seed) : x;
    return tf.add(frozenMatMulT(x, w), tf.matMul(tf.mul(tf.matMul(xin, a, false, true), o.scale), b, false, true)) as tf.Tensor2D;
  }
  const drop = (t: tf.Tensor2D) => (o.dropout > 0 ? (dropout(t, o.dropout, seed) as tf.Tensor2D) : t);
  const attrs = { scale: o.scale, rate: o.dropout, seed: o.dropout > 0 ? seed : 0 };
  return customOp([x, a, b], ([xx, aa, bb], save) => {
    // Inside the op the tape is off and its temporaries are freed when it returns.
    const low = tf.matMul(drop(xx as tf.Tensor2D), aa, false, true);
    const value = tf.add(frozenProduct(xx as tf.Tensor2D, w, false), tf.matMul(tf.mul(low, o.scale), bb, false, true));
    save([xx, aa, bb]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sa, sb] = saved;
        // dlow = scale * dy B [n, r]; dA = dlow^T dropout(x), dB = scale * dy^T (dropout(x) A^T)
        const [da, db, dlow] = tf
          .engine()
          .runKernel(
            FUSED_KERNELS.loraLinearGradAB,
            { dy, x: sx, a: sa, b: sb } as tf.NamedTensorMap,
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[];
        const dx = tf.add(frozenProduct(dy as tf.Tensor2D, w, true), drop(tf.matMul(dlow, sa) as tf.Tensor2D));
        return [dx, da, db];
      },
    };
  }) as tf.Tensor2D;
}

/** x W^T for any weight: tf.matMul for a tensor, {@link frozenMatMulT} for a frozen matrix. x [n, in] -> [n, out]. */
export function matMulT(x: tf.Tensor2D, w: WeightMatrix): tf.Tensor2D {
  return isTensor(w) ? (tf.matMul(x, w, false, true) as tf.Tensor2D) : frozenMatMulT(x, w);
}

/** A weight as a float32 tensor in the heap (a new tensor for a frozen matrix: caller disposes it). */
export function toTensor(w: WeightMatrix): tf.Tensor2D {
  return isTensor(w) ? w : tf.tensor2d(widenAll(w), [w.rows, w.cols]);
}
