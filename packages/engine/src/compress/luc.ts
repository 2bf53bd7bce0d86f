/**
 * Layer-wise unified compression (LUC, Edge-LLM: Yu et al., DAC 2024, §2):
 * 1. sensitivity profiling: for each decoder layer and each candidate sparsity / bit-width, compress
 *    only that layer and measure, on calibration sequences, the normalised MSE of its output hidden state
 *    (||h' - h||^2 / ||h||^2, which removes the depth bias of the raw MSE the official files hold) and the
 *    change in loss of the whole model;
 * 2. a policy from those sensitivities (policy.ts);
 * 3. compression of the model, layer-sequential as SparseGPT's llama.py: each layer is calibrated on the
 *    outputs of the already-compressed layers before it, pruned (Wanda or SparseGPT), then its weights are
 *    quantized and stored packed (dequantized just in time by the model).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayerSensitivity, LucPolicy, PruneMethod, SensitivityReport } from '@edgetune/core';
import { weightShape, type LlamaModel, type Linear } from '../model/llama.js';
import { narrowBf16, narrowF16, widenAll } from '../backend/frozen.js';
import { sparseSoftmaxCrossEntropy } from '../backend/index.js';
import { applyMask, HessianAccumulator, sparseGpt, wandaMask } from './prune.js';
import { dequantizeWeight, packedBytes, quantizeWeight, type WeightBits } from './quantize.js';
export type { LayerSensitivity, LucPolicy, PruneMethod, SensitivityReport };
import { budgetedBits, inverseSensitivitySparsity, meanRuleBits, owlSparsity, type PolicyError } from './policy.js';
import { IGNORE_INDEX } from '@edgetune/core';

/** Calibration data: sequences of equal length (tokens) and where they came from. */
export interface CalibrationSet {
  ids: number[][];
  description: string;
}

/** Models above this many parameters skip the end-to-end loss deltas of {@link profileSensitivity} by default. */
export const LOSS_DELTA_MAX_PARAMS = 200e6;

/** The paper's sparsity grid (official `pruning_schedular.py`). */
export const SPARSITY_GRID = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9];
export const BITS_GRID: WeightBits[] = [2, 3, 4, 8];

/** Per-linear input statistics gathered on calibration data. */
interface LinearStats {
  /** sum over tokens of x_j^2 per input column */
  sq: Float64Array;
  hessian?: HessianAccumulator;
}

function flatIds(calib: CalibrationSet): { ids: tf.Tensor1D; targets: tf.Tensor1D; B: number; T: number } {
  const B = calib.ids.length,
    T = calib.ids[0].length;
  if (!B || calib.ids.some((r) => r.length !== T)) throw new Error('calibration sequences must be non-empty and of equal length');
  const tg: number[] = [];
  for (const r of calib.ids) {
    for (let t = 0; t + 1 < T; t++) tg.push(r[t + 1]);
    tg.push(IGNORE_INDEX);
  }
  return { ids: tf.tensor1d(Int32Array.from(calib.ids.flat()), 'int32'), targets: tf.tensor1d(Int32Array.from(tg), 'int32'), B, T };
}

/** Mean next-token loss from hidden state h [B*T, d] at layer `from` (its input) through the rest. */
function lossFrom(model: LlamaModel, h: tf.Tensor2D, from: number, ctx: ReturnType<LlamaModel['context']>, targets: tf.Tensor1D): number {
  return tf.tidy(() => {
    let x = h;
    for (let i = from; i < model.layers.length; i++) x = model.layer(i, x, ctx, false);
    const logits = model.headLogits(model.rmsNorm(x, model.finalNorm)) as tf.Tensor2D;
    return sparseSoftmaxCrossEntropy(logits, targets).dataSync()[0];
  });
}

function nmse(a: tf.Tensor, ref: tf.Tensor): number {
  return tf.tidy(() => tf.div(tf.sum(tf.squaredDifference(a, ref)), tf.sum(tf.square(ref))).dataSync()[0]);
}

/** Collects Wanda norms (and SparseGPT Hessians) of layer `l`'s linears for input h. */
function layerStats(
  model: LlamaModel,
  l: number,
  h: tf.Tensor2D,
  ctx: ReturnType<LlamaModel['context']>,
  hessians: boolean,
): Map<Linear, LinearStats> {
  const stats = new Map<Linear, LinearStats>();
  const capture = (lin: Linear, x: tf.Tensor2D) => {
    const [n, c] = x.shape;
    let s = stats.get(lin);
    if (!s) {
      s = { sq: new Float64Array(c), hessian: hessians ? new HessianAccumulator(c) : undefined };
      stats.set(lin, s);
    }
    const data = x.dataSync() as Float32Array;
    for (let i = 0; i < data.length; i++) s.sq[i % c] += data[i] * data[i];
    s.hessian?.add(data, n);
  };
  tf.tidy(() => {
    model.layer(l, h, { ...ctx, capture }, false);
  });
  return stats;
}

/** Pruned (and optionally quantize-dequantized) weights for one linear. */
function compressWeight(
  lin: Linear,
  st: LinearStats,
  sparsity: number,
  bits: number | null,
  method: PruneMethod,
  groupSize: number,
): Float32Array {
  const [rows, cols] = weightShape(lin);
  let w = lin.stored ? widenAll(lin.stored) : (lin.weight.dataSync() as Float32Array);
  if (sparsity > 0) {
    if (method === 'sparsegpt' && st.hessian) w = sparseGpt(w, rows, cols, st.hessian.H, sparsity, { blockSize: 128 }).weight;
    else w = applyMask(Float32Array.from(w), wandaMask(w, rows, cols, Float64Array.from(st.sq, Math.sqrt), sparsity));
  }
  if (bits !== null && bits < 16) w = dequantizeWeight(quantizeWeight(w, rows, cols, bits as WeightBits, groupSize));
  return w;
}

/**
 * Runs fn with layer l's linears temporarily replaced by `weights`, held as float32 stored matrices outside
 * the heap (a profile tries every grid point on every layer: uploading each trial would grow the wasm heap).
 */
function withWeights<T>(weights: Map<Linear, Float32Array>, fn: () => T): T {
  const saved = new Map<Linear, Linear['stored']>();
  for (const [lin, w] of weights) {
    saved.set(lin, lin.stored);
    const [rows, cols] = weightShape(lin);
    lin.stored = { dtype: 'F32', rows, cols, data: w };
  }
  try {
    return fn();
  } finally {
    for (const [lin, s] of saved) {
      if (s) lin.stored = s;
      else delete lin.stored;
    }
  }
}

/**
 * Measures per-layer sensitivity to pruning (at each sparsity) and to weight quantization (at each
 * bit-width), compressing one layer at a time on the dense model: the layer's output NMSE (what the policy
 * uses) and, with `lossDelta`, the change of the model's loss (running every later layer again: L^2 / 2
 * layer passes per grid point, so off by default above {@link LOSS_DELTA_MAX_PARAMS}; the Dloss arrays are
 * then empty).
 */
export function profileSensitivity(
  model: LlamaModel,
  calib: CalibrationSet,
  opts: { method?: PruneMethod; sparsities?: number[]; bits?: number[]; groupSize?: number; lossDelta?: boolean } = {},
): SensitivityReport {
  const t0 = performance.now();
  const method = opts.method ?? 'wanda',
    sparsities = opts.sparsities ?? SPARSITY_GRID,
    bits = opts.bits ?? BITS_GRID,
    groupSize = opts.groupSize ?? 0;
  const { ids, targets, B, T } = flatIds(calib);
  const ctx = model.context({ batch: B, seq: T });
  // Dense inputs/outputs of every layer.
  const hs: tf.Tensor2D[] = [tf.keep(model.embed(ids))];
  for (let l = 0; l < model.layers.length; l++) hs.push(tf.keep(tf.tidy(() => model.layer(l, hs[l], ctx, false))));
  const lossDelta = opts.lossDelta ?? model.paramCount() <= LOSS_DELTA_MAX_PARAMS;
  const denseLoss = lossFrom(model, hs[0], 0, ctx, targets);
  const layers: LayerSensitivity[] = [];
  for (let l = 0; l < model.layers.length; l++) {
    const stats = layerStats(model, l, hs[l], ctx, method === 'sparsegpt');
    const measure = (sp: number, b: number | null) => {
      const ws = new Map<Linear, Float32Array>();
      for (const [lin, st] of stats) ws.set(lin, compressWeight(lin, st, sp, b, method, groupSize));
      return withWeights(ws, () => {
        const out = tf.tidy(() => model.layer(l, hs[l], ctx, false));
        const e = nmse(out, hs[l + 1]);
        const d = lossDelta ? lossFrom(model, out, l + 1, ctx, targets) - denseLoss : Number.NaN;
        out.dispose();
        return { e, d };
      });
    };
    const p = sparsities.map((sp) => measure(sp, null));
    const q = bits.map((b) => measure(0, b));
    layers.push({
      layer: l,
      pruneNmse: p.map((x) => x.e),
      pruneDloss: lossDelta ? p.map((x) => x.d) : [],
      quantNmse: q.map((x) => x.e),
      quantDloss: lossDelta ? q.map((x) => x.d) : [],
    });
  }
  tf.dispose([...hs, ids, targets]);
  return {
    method,
    sparsities,
    bits,
    groupSize,
    denseLoss,
    layers,
    calibration: { description: calib.description, sequences: B, seqLen: T, tokens: B * T },
    ms: performance.now() - t0,
  };
}

export interface PolicyOptions {
  targetSparsity: number;
  /** average weight bits (e.g. 6 = between 4 and 8) */
  avgBits: number;
  sparsityRule?: LucPolicy['sparsityRule'];
  bitsRule?: LucPolicy['bitsRule'];
  minSparsity?: number;
  maxSparsity?: number;
  /** OWL bound around target */
  lambda?: number;
  baseBits?: number;
  highBits?: number;
}

/**
 * Builds a policy from a sensitivity report. Pruning sensitivity of a layer = mean normalised MSE over the
 * sparsity grid (the paper's mean over ratios); quantization sensitivity = normalised MSE at `baseBits`.
 * @throws PolicyError when the budget cannot be met.
 */
export function buildPolicy(r: SensitivityReport, o: PolicyOptions): LucPolicy {
  const L = r.layers.length;
  const pruneSens = r.layers.map((x) => x.pruneNmse.reduce((a, b) => a + b, 0) / x.pruneNmse.length);
  const base = o.baseBits ?? 4,
    high = o.highBits ?? 8;
  const bi = r.bits.indexOf(base);
  const quantSens = r.layers.map((x) => (bi >= 0 ? x.quantNmse[bi] : x.quantNmse[0]));
  const sr = o.sparsityRule ?? 'owl',
    br = o.bitsRule ?? 'budgeted';
  const sparsity =
    sr === 'uniform'
      ? new Array(L).fill(o.targetSparsity)
      : sr === 'owl'
        ? owlSparsity(pruneSens, o.targetSparsity, o.lambda ?? 0.08)
        : inverseSensitivitySparsity(pruneSens, o.targetSparsity, { minSparsity: o.minSparsity ?? 0, maxSparsity: o.maxSparsity ?? 0.9 });
  let bits: number[];
  if (br === 'uniform') bits = new Array(L).fill(o.avgBits);
  else if (br === 'mean') bits = meanRuleBits(quantSens, base, high);
  else
    bits = budgetedBits(
      r.layers.map((x) => x.quantNmse),
      r.bits,
      o.avgBits,
    );
  return {
    sparsity,
    bits,
    targetSparsity: o.targetSparsity,
    avgBits: o.avgBits,
    sparsityRule: sr,
    bitsRule: br,
    pruneSensitivity: pruneSens,
    quantSensitivity: quantSens,
  };
}
export type { PolicyError };

/** What {@link compressModel} did, per layer and in total (bytes of frozen linear weights). */
export interface CompressionReport {
  layers: { layer: number; sparsity: number; bits: number; denseBytes: number; storedBytes: number }[];
  denseBytes: number;
  storedBytes: number;
  ms: number;
}

/**
 * Compresses the model in place following `policy`, layer-sequential: layer l is calibrated on the
 * outputs of the compressed layers before it, pruned with `method`, then quantized and stored packed
 * (bits < 16) with per-channel (groupSize 0) or per-group scales. Masks are implicit (zeros), and stay
 * fixed while tuning because LoRA never writes W. With `activationBits`, every linear's input is
 * fake-quantized per token with a straight-through estimator while tuning (LLM-QAT).
 */
export function compressModel(
  model: LlamaModel,
  calib: CalibrationSet,
  policy: LucPolicy,
  opts: { method?: PruneMethod; groupSize?: number; activationBits?: number } = {},
): CompressionReport {
  const t0 = performance.now();
  const method = opts.method ?? 'wanda',
    groupSize = opts.groupSize ?? 0;
  const { ids, B, T } = flatIds(calib);
  const ctx = model.context({ batch: B, seq: T });
  let h = tf.keep(model.embed(ids));
  const layers: CompressionReport['layers'] = [];
  for (let l = 0; l < model.layers.length; l++) {
    const stats = layerStats(model, l, h, ctx, method === 'sparsegpt');
    let dense = 0,
      stored = 0;
    for (const [lin, st] of stats) {
      const [rows, cols] = weightShape(lin);
      dense += rows * cols * 4;
      const sp = policy.sparsity[l],
        b = policy.bits[l];
      const w = compressWeight(lin, st, sp, null, method, groupSize);
      if (b < 16) {
        lin.packed = quantizeWeight(w, rows, cols, b as WeightBits, groupSize);
        stored += packedBytes(lin.packed);
        delete lin.stored;
        lin.weight.dispose();
        lin.weight = tf.zeros([0, 0]) as tf.Tensor2D; // the dense copy is gone: only the packed form stays resident
      } else if (lin.stored) {
        // pruned only: back into the stored precision (zeros stay zero), outside the heap
        const { dtype } = lin.stored;
        const data = dtype === 'F32' ? w : dtype === 'BF16' ? narrowBf16(w) : narrowF16(w);
        lin.stored = { dtype, rows, cols, data };
        stored += data.byteLength;
      } else {
        lin.weight.dispose();
        lin.weight = tf.tensor2d(w, [rows, cols]);
        stored += rows * cols * 4;
      }
    }
    // LLM-QAT activation fake-quantization (per token, straight-through gradient) on every linear input.
    if (opts.activationBits !== undefined && opts.activationBits < 16) for (const lin of stats.keys()) lin.actBits = opts.activationBits;
    const next = tf.keep(tf.tidy(() => model.layer(l, h, ctx, false)));
    h.dispose();
    h = next;
    layers.push({ layer: l, sparsity: policy.sparsity[l], bits: policy.bits[l], denseBytes: dense, storedBytes: stored });
  }
  tf.dispose([h, ids]);
  return {
    layers,
    denseBytes: layers.reduce((a, x) => a + x.denseBytes, 0),
    storedBytes: layers.reduce((a, x) => a + x.storedBytes, 0),
    ms: performance.now() - t0,
  };
}
