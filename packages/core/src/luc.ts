/**
 * The shapes of layer-wise unified compression (LUC, Edge-LLM: Yu et al., DAC 2024, §2) that the engine
 * produces and the service stores: per-layer sensitivities and the per-layer sparsity / bit-width policy.
 */

/** Pruning method: Wanda (Sun et al. 2023) or SparseGPT (Frantar & Alistarh 2023). */
export type PruneMethod = 'wanda' | 'sparsegpt';

/** Per-layer sensitivities, one entry per grid point. */
export interface LayerSensitivity {
  layer: number;
  /** normalised output MSE per sparsity in `sparsities` */
  pruneNmse: number[];
  /** loss(compressed layer) - loss(dense) per sparsity, nats/token */
  pruneDloss: number[];
  /** normalised output MSE per bit-width in `bits` */
  quantNmse: number[];
  quantDloss: number[];
}

/** Sensitivity profile of every decoder layer at each grid point, with its calibration data. */
export interface SensitivityReport {
  method: PruneMethod;
  sparsities: number[];
  bits: number[];
  groupSize: number;
  denseLoss: number;
  layers: LayerSensitivity[];
  calibration: { description: string; sequences: number; seqLen: number; tokens: number };
  ms: number;
}

/** A per-layer compression policy (stored as a policy entity by the service). */
export interface LucPolicy {
  /** per layer, fraction of weights pruned in each of its 7 linears */
  sparsity: number[];
  /** per layer, weight bit-width (16 = unquantized) */
  bits: number[];
  targetSparsity: number;
  avgBits: number;
  sparsityRule: 'inverse' | 'owl' | 'uniform';
  bitsRule: 'mean' | 'budgeted' | 'uniform';
  /** the per-layer sensitivities the rules used */
  pruneSensitivity: number[];
  quantSensitivity: number[];
}

/**
 * The policy that gives every one of `layers` layers the same bits and no pruning (LUC's `uniform` rules),
 * without sensitivity profiling: what the benches compress with when the per-layer rules are not under study.
 */
export function uniformPolicy(layers: number, bits: number): LucPolicy {
  return {
    sparsity: new Array(layers).fill(0),
    bits: new Array(layers).fill(bits),
    targetSparsity: 0,
    avgBits: bits,
    sparsityRule: 'uniform',
    bitsRule: 'uniform',
    pruneSensitivity: [],
    quantSensitivity: [],
  };
}
