// BatchMatMul / _FusedMatMul kernel overrides.
//
// Why: tfjs-backend-wasm 4.22 uses XNNPACK only for batch 1 without transposes; every other case
// (every matMul gradient, attention's batched matmuls, broadcast batches) runs a naive loop, and the
// cpu backend's matmul is plain JS: both far below what an SGEMM does.
//  - native: OpenBLAS cblas_sgemm through native/blas_addon.node, zero-copy on the wasm heap or
//    the cpu backend's Float32Arrays (wasm and cpu).
//  - fastmm (wasm, no addon): explicit Transpose, batch folded into rows when B is shared, else one
//    raw XNNPACK call per batch on zero-copy "view" tensor ids inside the operand buffers.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { BlasAddon } from './native.js';
import type { CpuBackend, KernelArgs, WasmBackend } from './types.js';

/** Shapes of one BatchMatMul call, with the batch broadcast resolved. */
export interface MatMulPlan {
  /** Rows of op(A) and of the output. */
  M: number;
  /** Columns of op(B) and of the output. */
  N: number;
  /** Shared (inner) dimension. */
  K: number;
  /** Number of matrices in A, B and the output (products of the leading dims). */
  batchA: number;
  batchB: number;
  batch: number;
  /** Output shape: broadcast leading dims + [M, N]. */
  outShape: number[];
  /**
   * For general broadcasts (neither equal batches nor a batch of 1, e.g. [2,1,..] x [1,3,..]): for
   * each output matrix, the index of the A and B matrix it uses. null otherwise.
   */
  aIndex: Int32Array | null;
  bIndex: Int32Array | null;
}

/**
 * Resolves the shapes of `matMul(a, b, transposeA, transposeB)` for tensors of rank >= 2, with
 * NumPy-style broadcasting of the leading (batch) dims.
 * @throws Error when a rank is below 2, the inner dims differ or the batch dims do not broadcast.
 */
export function planMatMul(aShape: readonly number[], bShape: readonly number[], transposeA: boolean, transposeB: boolean): MatMulPlan {
  const ar = aShape.length,
    br = bShape.length;
  if (ar < 2 || br < 2) throw new Error(`matMul: inputs must have rank >= 2, got shapes [${aShape}] and [${bShape}]`);
  const M = transposeA ? aShape[ar - 1] : aShape[ar - 2];
  const Ka = transposeA ? aShape[ar - 2] : aShape[ar - 1];
  const Kb = transposeB ? bShape[br - 1] : bShape[br - 2];
  const N = transposeB ? bShape[br - 2] : bShape[br - 1];
  if (Ka !== Kb) {
    throw new Error(
      `matMul: inner shapes (${Ka}) and (${Kb}) of tensors with shapes [${aShape}] and [${bShape}] ` +
        `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outerA = aShape.slice(0, -2),
    outerB = bShape.slice(0, -2);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batchA = tf.util.sizeFromShape(outerA),
    batchB = tf.util.sizeFromShape(outerB);
  const batch = tf.util.sizeFromShape(outer);
  let aIndex: Int32Array | null = null,
    bIndex: Int32Array | null = null;
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) {
    aIndex = broadcastIndex(outerA, outer);
    bIndex = broadcastIndex(outerB, outer);
  }
  return { M, N, K: Ka, batchA, batchB, batch, outShape: [...outer, M, N], aIndex, bIndex };
}

/** For each flat index into `outer`, the flat index into `dims` (right-aligned, size-1 dims broadcast). */
function broadcastIndex(dims: readonly number[], outer: number[]): Int32Array {
  const total = tf.util.sizeFromShape(outer);
  const idx = new Int32Array(total);
  const off = outer.length - dims.length;
  for (let i = 0; i < total; i++) {
    let rem = i,
      src = 0,
      stride = 1;
    for (let d = outer.length - 1; d >= 0; d--) {
      const coord = rem % outer[d];
      rem = (rem - coord) / outer[d];
      const dd = d - off;
      if (dd >= 0) {
        if (dims[dd] !== 1) src += coord * stride;
        stride *= dims[dd];
      }
    }
    idx[i] = src;
  }
  return idx;
}

/**
 * Runs a planned matmul with OpenBLAS on flat float arrays (offsets in elements; A, B, C may be the
 * same array, e.g. the wasm heap). Folds the batch into rows when B is shared and A is not
 * transposed, so that one large GEMM replaces many small ones.
 */
export function sgemmPlan(
  blas: BlasAddon,
  A: Float32Array,
  aOff: number,
  B: Float32Array,
  bOff: number,
  C: Float32Array,
  cOff: number,
  p: MatMulPlan,
  ta: boolean,
  tb: boolean,
): void {
  const { M, N, K } = p;
  if (p.aIndex && p.bIndex) {
    for (let i = 0; i < p.batch; i++) {
      blas.sgemm(A, aOff + p.aIndex[i] * M * K, B, bOff + p.bIndex[i] * K * N, C, cOff + i * M * N, M, N, K, ta, tb, 1, 0, 0, 0);
    }
  } else if (p.batchB === 1 && !ta) {
    blas.sgemm(A, aOff, B, bOff, C, cOff, p.batch * M, N, K, false, tb, 1, 0, 0, 0);
  } else {
    blas.sgemm(A, aOff, B, bOff, C, cOff, M, N, K, ta, tb, p.batch, p.batchA === 1 ? 0 : M * K, p.batchB === 1 ? 0 : K * N, M * N);
  }
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}
function matMulAttrs(args: KernelArgs): MatMulAttrs {
  return { transposeA: !!args.attrs?.transposeA, transposeB: !!args.attrs?.transposeB };
}
function operands(args: KernelArgs): [TensorInfo, TensorInfo] {
  const { a, b } = args.inputs;
  if (!a || !b) throw new Error('BatchMatMul: inputs a and b are required');
  return [a, b];
}

/** Element offset of a float32 tensor in the wasm heap. */
export function heapOffsetF32(backend: WasmBackend, t: TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (!d) throw new Error('wasm backend: tensor data not found (disposed?)');
  return d.memoryOffset >>> 2;
}

/** BatchMatMul for the wasm backend via OpenBLAS on the wasm heap. Non-float32 goes to `fallback`. */
export function nativeWasmBatchMatMul(blas: BlasAddon, fallback: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const [a, b] = operands(args);
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args as Parameters<KernelFunc>[0]);
    const { transposeA, transposeB } = matMulAttrs(args);
    const p = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput(p.outShape, 'float32');
    if (p.batch * p.M * p.N === 0) return out;
    // Take the heap view only now: makeOutput may have grown the heap (detaching older views).
    const heap = backend.wasm.HEAPF32;
    sgemmPlan(
      blas,
      heap,
      heapOffsetF32(backend, a),
      heap,
      heapOffsetF32(backend, b),
      heap,
      heapOffsetF32(backend, out),
      p,
      transposeA,
      transposeB,
    );
    return out;
  }) as KernelFunc;
}

function cpuFloat32(backend: CpuBackend, t: TensorInfo): Float32Array | null {
  const v = backend.data.get(t.dataId)?.values;
  return v instanceof Float32Array ? v : null;
}

/** BatchMatMul for the cpu backend via OpenBLAS on the backend's Float32Arrays. */
export function nativeCpuBatchMatMul(blas: BlasAddon, fallback: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const [a, b] = operands(args);
    const backend = args.backend as CpuBackend;
    const A = a.dtype === 'float32' ? cpuFloat32(backend, a) : null;
    const B = b.dtype === 'float32' ? cpuFloat32(backend, b) : null;
    if (!A || !B) return fallback(args as Parameters<KernelFunc>[0]);
    const { transposeA, transposeB } = matMulAttrs(args);
    const p = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const C = new Float32Array(p.batch * p.M * p.N);
    if (C.length > 0) sgemmPlan(blas, A, 0, B, 0, C, 0, p, transposeA, transposeB);
    return backend.makeTensorInfo(p.outShape, 'float32', C);
  }) as KernelFunc;
}

/**
 * BatchMatMul for the cpu backend without the addon: the stock kernel, except for general batch
 * broadcasts (e.g. [2,1,M,K] x [1,3,K,N]), where the stock kernel indexes batches modulo their
 * count and returns wrong results; those run a plain JS loop (i-k-j order, float32 like the stock one).
 */
export function jsCpuBatchMatMul(stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const [a, b] = operands(args);
    const backend = args.backend as CpuBackend;
    const { transposeA: ta, transposeB: tb } = matMulAttrs(args);
    const p = planMatMul(a.shape, b.shape, ta, tb);
    const A = a.dtype === 'float32' ? cpuFloat32(backend, a) : null;
    const B = b.dtype === 'float32' ? cpuFloat32(backend, b) : null;
    if (!p.aIndex || !p.bIndex || !A || !B) return stockFn(args as Parameters<KernelFunc>[0]);
    const { M, N, K } = p;
    const C = new Float32Array(p.batch * M * N);
    // Element (r, c) of op(X) for a rows x cols matrix stored row-major, transposed or not.
    const aAt = (base: number, i: number, k: number) => A[base + (ta ? k * M + i : i * K + k)];
    const bAt = (base: number, k: number, j: number) => B[base + (tb ? j * K + k : k * N + j)];
    for (let o = 0; o < p.batch; o++) {
      const aBase = p.aIndex[o] * M * K,
        bBase = p.bIndex[o] * K * N,
        cBase = o * M * N;
      for (let i = 0; i < M; i++) {
        for (let k = 0; k < K; k++) {
          const av = aAt(aBase, i, k);
          for (let j = 0; j < N; j++) C[cBase + i * N + j] += av * bAt(bBase, k, j);
        }
      }
    }
    return backend.makeTensorInfo(p.outShape, 'float32', C);
  }) as KernelFunc;
}

type RawBatchMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: number,
  transposeB: number,
  outId: number,
) => void;
const rawCache = new WeakMap<object, RawBatchMatMul>();

/** The C entry point of the stock wasm kernel (same cwrap signature as tfjs-backend-wasm's setup). */
function rawBatchMatMul(backend: WasmBackend): RawBatchMatMul {
  let raw = rawCache.get(backend.wasm);
  if (!raw) {
    raw = backend.wasm.cwrap('BatchMatMul', null, [
      'number',
      'array',
      'number',
      'number',
      'array',
      'number',
      'number',
      'number',
      'number',
    ]) as RawBatchMatMul;
    rawCache.set(backend.wasm, raw);
  }
  return raw;
}

const shapeBytes = (s: number[]) => new Uint8Array(new Int32Array(s).buffer);

/**
 * BatchMatMul for the wasm backend without the addon ("fastmm"). Batch-1 untransposed products
 * already take XNNPACK in the stock kernel and go there unchanged; every other case is reduced to
 * that one: explicit Transpose of transposed operands, then either one call with the batch folded
 * into rows (B shared) or one call per batch on view tensors registered at offsets inside the
 * operand buffers (no slicing copies).
 */
export function fastWasmBatchMatMul(stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const [a, b] = operands(args);
    const call = (x: KernelArgs) => stockFn(x as Parameters<KernelFunc>[0]) as TensorInfo;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stockFn(args as Parameters<KernelFunc>[0]);
    const { transposeA, transposeB } = matMulAttrs(args);
    const p = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const { M, N, K } = p;
    if ((p.batchA === 1 && p.batchB === 1 && !transposeA && !transposeB) || p.batch * M * N * K === 0) {
      return stockFn(args as Parameters<KernelFunc>[0]);
    }
    const backend = args.backend as WasmBackend;
    const transpose = tf.getKernel('Transpose', 'wasm')?.kernelFunc;
    if (!transpose) throw new Error('wasm backend: Transpose kernel not registered');
    const temps: TensorInfo[] = [];
    const asRowMajor = (x: TensorInfo, batch: number, rows: number, cols: number, t: boolean): TensorInfo => {
      const view: TensorInfo = { dataId: x.dataId, shape: t ? [batch, cols, rows] : [batch, rows, cols], dtype: 'float32' };
      if (!t) return view;
      const y = transpose({ inputs: { x: view }, backend, attrs: { perm: [0, 2, 1] } }) as TensorInfo;
      temps.push(y);
      return y;
    };
    try {
      const A = asRowMajor(a, p.batchA, M, K, transposeA);
      const B = asRowMajor(b, p.batchB, K, N, transposeB);
      if (!p.aIndex && p.batchB === 1) {
        const out = call({
          inputs: { a: { dataId: A.dataId, shape: [1, p.batch * M, K], dtype: 'float32' }, b: B },
          backend,
          attrs: { transposeA: false, transposeB: false },
        });
        out.shape = p.outShape;
        return out;
      }
      const out = backend.makeOutput(p.outShape, 'float32');
      const raw = rawBatchMatMul(backend);
      const aBase = heapOffsetF32(backend, A) * 4,
        bBase = heapOffsetF32(backend, B) * 4;
      const oBase = heapOffsetF32(backend, out) * 4;
      const sa = shapeBytes([1, M, K]),
        sb = shapeBytes([1, K, N]);
      const view = (byteOffset: number, size: number) => {
        const id = backend.dataIdNextNumber++;
        backend.wasm.tfjs.registerTensor(id, size, byteOffset);
        return id;
      };
      for (let i = 0; i < p.batch; i++) {
        const ai = p.aIndex ? p.aIndex[i] : p.batchA === 1 ? 0 : i;
        const bi = p.bIndex ? p.bIndex[i] : p.batchB === 1 ? 0 : i;
        const ia = view(aBase + ai * M * K * 4, M * K),
          ib = view(bBase + bi * K * N * 4, K * N);
        const io = view(oBase + i * M * N * 4, M * N);
        try {
          raw(ia, sa, 3, ib, sb, 3, 0, 0, io);
        } finally {
          // Unregisters the ids (and XNNPACK operators cached for them); the memory stays owned by A/B/out.
          backend.wasm.tfjs.disposeData(ia);
          backend.wasm.tfjs.disposeData(ib);
          backend.wasm.tfjs.disposeData(io);
        }
      }
      return out;
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  }) as KernelFunc;
}

const ACTIVATIONS: Record<string, string | null> = {
  linear: null,
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  sigmoid: 'Sigmoid',
  leakyrelu: 'LeakyRelu',
  prelu: 'Prelu',
};

/**
 * _FusedMatMul (tf.fused.matMul) = activation(matMul(a, b) + bias) built from our BatchMatMul
 * kernel plus the backend's own Add / activation kernels. Cases the stock kernel handles fast
 * (wasm: batch 1 without transposes, where XNNPACK fuses bias and activation) go to `stockFn`.
 */
export function fusedMatMulOverride(
  backendName: string,
  matmul: KernelFunc,
  stockFn: KernelFunc,
  stockIsFastWhenPlain: boolean,
): KernelFunc {
  return ((args: KernelArgs) => {
    const [a, b] = operands(args);
    const { transposeA, transposeB } = matMulAttrs(args);
    const activation = String(args.attrs?.activation ?? 'linear');
    const actKernel = Object.hasOwn(ACTIVATIONS, activation) ? ACTIVATIONS[activation] : undefined;
    const { bias, preluActivationWeights } = args.inputs;
    const plain = a.shape.length === 3 && b.shape.length === 3 && a.shape[0] === 1 && b.shape[0] === 1 && !transposeA && !transposeB;
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || actKernel === undefined || (plain && stockIsFastWhenPlain)) {
      return stockFn(args as Parameters<KernelFunc>[0]);
    }
    const backend = args.backend as { disposeData(id: object): unknown };
    const run = (name: string, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown> = {}) => {
      const k = tf.getKernel(name, backendName);
      if (!k) throw new Error(`_FusedMatMul: kernel ${name} not registered for backend ${backendName}`);
      return k.kernelFunc({ inputs, backend, attrs } as Parameters<KernelFunc>[0]) as TensorInfo;
    };
    let y = matmul({ inputs: { a, b }, backend, attrs: { transposeA, transposeB } } as Parameters<KernelFunc>[0]) as TensorInfo;
    const replace = (z: TensorInfo) => {
      backend.disposeData(y.dataId);
      y = z;
    };
    if (bias) replace(run('Add', { a: y, b: bias }));
    if (actKernel === 'Prelu') {
      if (!preluActivationWeights) throw new Error('_FusedMatMul: prelu activation needs preluActivationWeights');
      replace(run('Prelu', { x: y, alpha: preluActivationWeights }));
    } else if (actKernel === 'LeakyRelu') {
      replace(run('LeakyRelu', { x: y }, { alpha: Number(args.attrs?.leakyreluAlpha ?? 0.2) }));
    } else if (actKernel) {
      replace(run(actKernel, { x: y }));
    }
    return y;
  }) as KernelFunc;
}
