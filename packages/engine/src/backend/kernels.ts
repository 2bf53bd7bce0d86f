// UnsortedSegmentSum (wasm: missing; cpu: O(numSegments * rows * cols)) and the wasm Identity alias.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { CpuBackend, KernelArgs, WasmBackend } from './types.js';

type NumArray = Float32Array | Int32Array;

/**
 * out[ids[r], j] += x[r, j] for r < ids.length, j < inner. Ids outside [0, numSegments) are
 * dropped, as TF does for negative ids. `out` must be zeroed by the caller.
 */
export function scatterAdd(x: NumArray, ids: NumArray, inner: number, numSegments: number, out: NumArray): void {
  for (let r = 0; r < ids.length; r++) {
    const s = ids[r];
    if (!(s >= 0 && s < numSegments)) continue;
    const ob = s * inner,
      xb = r * inner;
    for (let j = 0; j < inner; j++) out[ob + j] += x[xb + j];
  }
}

interface SegmentSumShapes {
  rows: number;
  inner: number;
  numSegments: number;
  outShape: number[];
}

/**
 * Shapes of UnsortedSegmentSum(x, segmentIds, numSegments): segmentIds.shape must be a prefix of
 * x.shape; the output is [numSegments, ...x.shape[segmentIds.rank:]] (TF semantics).
 * @throws Error on mismatched shapes or a negative/non-integer numSegments.
 */
function segmentSumShapes(x: TensorInfo, ids: TensorInfo, numSegments: unknown): SegmentSumShapes {
  const n = Number(numSegments);
  if (!Number.isInteger(n) || n < 0) throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`);
  const r = ids.shape.length;
  if (r > x.shape.length || ids.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`UnsortedSegmentSum: segmentIds shape [${ids.shape}] must be a prefix of x shape [${x.shape}]`);
  }
  const innerShape = x.shape.slice(r);
  return { rows: tf.util.sizeFromShape(ids.shape), inner: tf.util.sizeFromShape(innerShape), numSegments: n, outShape: [n, ...innerShape] };
}

function segmentInputs(args: KernelArgs): [TensorInfo, TensorInfo] {
  const { x, segmentIds } = args.inputs;
  if (!x || !segmentIds) throw new Error('UnsortedSegmentSum: inputs x and segmentIds are required');
  return [x, segmentIds];
}

/** UnsortedSegmentSum for wasm (the gradient of Gather, i.e. the embedding backward): scatter-add on the heap. */
export const wasmUnsortedSegmentSum: KernelFunc = ((args: KernelArgs) => {
  const [x, segmentIds] = segmentInputs(args);
  if ((x.dtype !== 'float32' && x.dtype !== 'int32') || segmentIds.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum (wasm): x must be float32/int32 and segmentIds int32, got ${x.dtype}/${segmentIds.dtype}`);
  }
  const s = segmentSumShapes(x, segmentIds, args.attrs?.numSegments);
  const backend = args.backend as WasmBackend;
  const out = backend.makeOutput(s.outShape, x.dtype);
  // Views only after makeOutput (heap growth detaches older views).
  const view = (t: TensorInfo, n: number): NumArray => {
    const off = backend.dataIdMap.get(t.dataId)!.memoryOffset;
    return t.dtype === 'float32'
      ? new Float32Array(backend.wasm.HEAPU8.buffer, off, n)
      : new Int32Array(backend.wasm.HEAPU8.buffer, off, n);
  };
  const o = view(out, s.numSegments * s.inner);
  o.fill(0); // makeOutput is malloc, not calloc
  scatterAdd(view(x, s.rows * s.inner), view(segmentIds, s.rows), s.inner, s.numSegments, o);
  return out;
}) as KernelFunc;

/** UnsortedSegmentSum for cpu: O(rows * cols) scatter-add instead of the stock per-segment masks. */
export function cpuUnsortedSegmentSum(stockFn: KernelFunc | undefined): KernelFunc {
  return ((args: KernelArgs) => {
    const [x, segmentIds] = segmentInputs(args);
    const backend = args.backend as CpuBackend;
    const xv = backend.data.get(x.dataId)?.values,
      ids = backend.data.get(segmentIds.dataId)?.values;
    if (!(xv instanceof Float32Array || xv instanceof Int32Array) || !(ids instanceof Int32Array)) {
      if (stockFn) return stockFn(args as Parameters<KernelFunc>[0]);
      throw new Error(`UnsortedSegmentSum (cpu): unsupported dtypes ${x.dtype}/${segmentIds.dtype}`);
    }
    const s = segmentSumShapes(x, segmentIds, args.attrs?.numSegments);
    const o = xv instanceof Float32Array ? new Float32Array(s.numSegments * s.inner) : new Int32Array(s.numSegments * s.inner);
    scatterAdd(xv, ids, s.inner, s.numSegments, o);
    return backend.makeTensorInfo(s.outShape, x.dtype, o);
  }) as KernelFunc;
}

/**
 * Identity for wasm that aliases the input (refcount +1) instead of copying it. Tensors are
 * immutable, and the engine clones every tensor it saves for backward through Identity, so the
 * stock memcpy costs time and memory for nothing (the cpu backend aliases already).
 */
export function wasmIdentityAlias(stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const x = args.inputs.x;
    if (!x) throw new Error('Identity: input x is required');
    if (x.dtype === 'string') return stockFn(args as Parameters<KernelFunc>[0]);
    (args.backend as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  }) as KernelFunc;
}

/**
 * Cast for wasm that aliases the input when the dtype does not change. TF.js gradients call
 * cast(x, 'float32') on float32 tensors all the time (Mul, Sum, Mean, ... ~160 per training step),
 * and the stock wasm kernel copies the data for that; other casts go to the stock kernel.
 */
export function wasmCastAlias(stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const x = args.inputs.x;
    if (!x) throw new Error('Cast: input x is required');
    if (x.dtype !== args.attrs?.dtype || x.dtype === 'string' || x.dtype === 'complex64') {
      return stockFn(args as Parameters<KernelFunc>[0]);
    }
    (args.backend as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  }) as KernelFunc;
}

/**
 * GatherV2 for wasm, fast path for the embedding lookup and row selection: axis 0, no batch dims,
 * float32/int32 data and int32 indices, one block copy per index (the stock kernel computes every
 * element's address through generic strides). Out-of-range
 * indices throw like the stock kernel; other cases go to it.
 */
export function wasmGatherFast(stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { x, indices } = args.inputs;
    if (!x || !indices) throw new Error('GatherV2: inputs x and indices are required');
    const axis = Number(args.attrs?.axis ?? 0),
      batchDims = Number(args.attrs?.batchDims ?? 0);
    const rows = x.shape[0];
    if (
      (axis !== 0 && axis !== -x.shape.length) ||
      batchDims !== 0 ||
      x.shape.length < 1 ||
      (x.dtype !== 'float32' && x.dtype !== 'int32') ||
      indices.dtype !== 'int32'
    ) {
      return stockFn(args as Parameters<KernelFunc>[0]);
    }
    const backend = args.backend as WasmBackend;
    const inner = tf.util.sizeFromShape(x.shape.slice(1));
    const count = tf.util.sizeFromShape(indices.shape);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    // Views only after makeOutput (heap growth detaches older views).
    const heap = backend.wasm.HEAP32;
    const off = (t: TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset >>> 2;
    const xo = off(x),
      io = off(indices),
      oo = off(out);
    for (let i = 0; i < count; i++) {
      const r = heap[io + i];
      if (!(r >= 0 && r < rows)) {
        backend.disposeData(out.dataId);
        throw new Error(`GatherV2: the index value ${r} is not in [0, ${rows - 1}]`);
      }
      if (inner > 0) heap.copyWithin(oo + i * inner, xo + r * inner, xo + (r + 1) * inner);
    }
    return out;
  }) as KernelFunc;
}
