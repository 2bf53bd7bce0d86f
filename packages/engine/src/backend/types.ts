// Structural views of the TF.js backend internals our kernels touch. Both classes are public
// (BackendWasm, MathBackendCPU) but some members we need are private in their .d.ts, so kernels
// cast the `backend` argument to these shapes. Checked against tfjs 4.22.
import type { DataId, DataType, TensorInfo } from '@tensorflow/tfjs-core';

/** What `initBackend` reports about the active backend and our kernel overrides. */
export interface BackendInfo {
  /** TF.js backend name: 'wasm', 'cpu', 'tensorflow' (tfjs-node / tfjs-node-gpu), ... */
  backend: string;
  /** Implementation behind `tf.matMul` (BatchMatMul kernel). */
  matmul: 'openblas' | 'wasm-fastmm' | 'tfjs';
  /**
   * Implementation behind the fused training kernels (RMSNorm, SwiGLU, RoPE, attention, LoRA linear,
   * AdamW; fused.ts): 'native' = the addon's, with or without OpenBLAS; 'js' = fused.ts's TF.js compositions.
   */
  fused: 'native' | 'js';
  /** OpenBLAS threads when matmul is 'openblas', else the backend's own thread count (wasm: 1). */
  blasThreads: number;
  /** Names of the kernels we registered over (or in addition to) the stock ones. */
  kernels: string[];
  /** wasm only: whether the SIMD binary is running. */
  simd?: boolean;
  /** Whether backprop frees gradients and saved tensors as it goes (backprop.ts; EDGETUNE_EAGER_BACKPROP=0: off). */
  eagerBackprop?: boolean;
}

/** Per-tensor record of the wasm backend (`BackendWasm.dataIdMap`). */
export interface WasmTensorData {
  id: number;
  /** Byte offset of the tensor's data in the wasm heap. */
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
  refCount: number;
}

/** The emscripten module of the wasm backend. */
export interface WasmModule {
  HEAPU8: Uint8Array;
  HEAP32: Int32Array;
  HEAPF32: Float32Array;
  cwrap(name: string, ret: string | null, args: string[]): (...args: unknown[]) => unknown;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
    getThreadsCount(): number;
  };
}

/** `BackendWasm` (tfjs-backend-wasm). */
export interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: DataId): WasmTensorData | undefined };
  /** Private counter for tensor ids inside the C++ registry; we borrow ids from it for views. */
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: DataType, memoryOffset?: number): TensorInfo;
  disposeData(dataId: DataId, force?: boolean): boolean;
  incRef(dataId: DataId): void;
}

/** `MathBackendCPU` (tfjs-backend-cpu). */
export interface CpuBackend {
  data: { get(dataId: DataId): { values?: unknown } | undefined };
  makeTensorInfo(shape: number[], dtype: DataType, values?: unknown): TensorInfo;
  disposeIntermediateTensorInfo(t: TensorInfo): void;
}

/** The kernel-function argument, typed loosely enough for all our kernels. */
export interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: object;
  attrs?: Record<string, unknown>;
}
