/**
 * Analytic matrix-multiply FLOPs of one LlamaDecoderLayer (HF `modeling_llama.py`), 2·M·N·K per product.
 * One function for the trainer's GFLOP/s count (AdaptiveTrainer.matmulFlopsOf) and the planner's time
 * forecast (costFeatures), so that the two count the same work. Imports no TF.js (the API plans with it).
 */
import type { LlamaConfig } from './hf-config.js';

/** The decoder dimensions the count needs. */
export type LayerShape = Pick<LlamaConfig, 'hiddenSize' | 'intermediateSize' | 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim'>;

/** One layer's forward FLOPs by part. */
export interface LayerFlops {
  /** the seven frozen linears (q, k, v, o, gate, up, down) */
  base: number;
  /** attention's two batched products, Q K^T and P V (causal mask not discounted) */
  att: number;
  /** the LoRA branches x A^T, (.) B^T of the targeted linears */
  lora: number;
}

/** [in, out] features of each linear, by PEFT target-module name. */
function linearDims(c: LayerShape): Record<string, [number, number]> {
  const d = c.hiddenSize,
    f = c.intermediateSize,
    q = c.numAttentionHeads * c.headDim,
    kv = c.numKeyValueHeads * c.headDim;
  return { q_proj: [d, q], k_proj: [d, kv], v_proj: [d, kv], o_proj: [q, d], gate_proj: [d, f], up_proj: [d, f], down_proj: [f, d] };
}

/**
 * Forward FLOPs of one layer on `batch` sequences of `seq` tokens.
 * @param loraR LoRA rank (0: no LoRA); @param loraTargets target-module names (e.g. `q_proj`); unknown names count nothing.
 */
export function layerForwardFlops(c: LayerShape, batch: number, seq: number, loraR: number, loraTargets: readonly string[]): LayerFlops {
  const dims = linearDims(c),
    N = batch * seq;
  let base = 0,
    lora = 0;
  for (const [name, [i, o]] of Object.entries(dims)) {
    base += 2 * N * i * o;
    if (loraR > 0 && loraTargets.includes(name)) lora += 2 * N * loraR * (i + o);
  }
  return { base, att: 4 * batch * c.numAttentionHeads * seq * seq * c.headDim, lora };
}

/**
 * Forward + backward FLOPs of a layer on the gradient tape: the forward, then input gradients through the
 * frozen weights (1x base), attention's four backward products (2x att) and LoRA's dA, dB, dX (2x lora).
 * The frozen weights get no weight gradient.
 */
export function layerTrainFlops(f: LayerFlops): number {
  return 2 * f.base + 3 * f.att + 3 * f.lora;
}
