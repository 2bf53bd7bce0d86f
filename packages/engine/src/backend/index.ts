// Backend selection and our TF.js kernels (registered through the public registerKernel API).
export { initBackend, backendInfo, matmulPath, memoryStats } from './init.js';
export type { InitBackendOptions } from './init.js';
export type { BackendInfo } from './types.js';
export { sparseSoftmaxCrossEntropy, sparseSoftmaxCrossEntropyOps, XENT_KERNEL, XENT_GRAD_KERNEL } from './xent.js';
export { measureSgemmPeak, plannerSgemmPeak, recordSgemmPeak, recentReadings, SGEMM_MEMORY_MS } from './peak.js';
export type { SgemmPeak } from './peak.js';
export { loadBlasAddon, loadNativeAddon, nativeLoadError } from './native.js';
export type { BlasAddon } from './native.js';
export {
  rmsNorm,
  rmsNormOps,
  swiglu,
  swigluOps,
  ropeHeads,
  ropeHeadsOps,
  attention,
  attentionOps,
  dropout,
  loraLinear,
  loraLinearOps,
  adamwInPlace,
  sumOfSquares,
  fusedKernelsActive,
  FUSED_KERNELS,
} from './fused.js';
export type { HeadsOptions, AttentionOptions, AdamWScalars, LoraLinearOptions } from './fused.js';
