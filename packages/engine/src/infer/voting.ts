/**
 * Exit voting (Edge-LLM's "voting", Yu et al., DAC 2024, §4): every exit path gives a next-token distribution and
 * a rule combines them. Exit k's path is the frozen backbone (no LoRA) up to its window, the window with
 * its LoRA, then its own norm + head, exactly the computation it was trained on.
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMulT, type WeightMatrix } from '../backend/frozen.js';
import type { LlamaModel } from '../model/llama.js';

/** `max`: element-wise max over exits, renormalised (official code); `mean`: average;
 *  `confidence`: per-row weights softmax_k(-H(P_k)) (lower entropy, more weight);
 *  `weighted`: a mixture sum_k w_k P_k with per-exit weights fitted on validation data
 *  ({@link fitExitWeights}; beyond the paper: a weak exit no longer drags the vote down). */
export type VotingRule = 'max' | 'mean' | 'confidence' | 'weighted';
export const VOTING_RULES: VotingRule[] = ['max', 'mean', 'confidence', 'weighted'];

/** One exit path for inference (a trained ExitHead, or the plain final norm + lm_head). */
export interface ExitPath {
  /** layer whose output the head reads (0-based) */
  layer: number;
  /** first layer that runs with LoRA on this path */
  start: number;
  /** [hidden] */
  norm: tf.Tensor1D;
  /** [vocab, hidden]: a tensor, or the model's stored lm_head */
  head: WeightMatrix;
  /** low-rank head: logits += scale (x A^T) B^T, A [r, hidden], B [vocab, r] (an exit head over a stored lm_head) */
  headLora?: { A: tf.Tensor2D; B: tf.Tensor2D; scale: number };
  /** mixture weight of this exit in the `weighted` vote (fitted on validation; absent: uniform) */
  weight?: number;
}

/** A path's logits for normalised states x [n, hidden]: x head^T (+ its low-rank head's term). Returns [n, vocab]. */
export function pathLogits(p: Pick<ExitPath, 'head' | 'headLora'>, x: tf.Tensor2D): tf.Tensor2D {
  const y = matMulT(x, p.head);
  if (!p.headLora) return y;
  const { A, B, scale } = p.headLora;
  return tf.add(y, tf.matMul(tf.mul(tf.matMul(x, A, false, true), scale), B, false, true)) as tf.Tensor2D;
}

/**
 * Combines per-exit probabilities.
 * @param probs K tensors [n, vocab], each row a distribution.
 * @param weights K mixture weights summing to 1 for `weighted` (default uniform); ignored by other rules.
 * @returns [n, vocab] rows summing to 1. Caller disposes.
 * @throws Error when `weights` does not have one entry per exit.
 */
export function combineExits(probs: tf.Tensor2D[], rule: VotingRule, weights?: number[]): tf.Tensor2D {
  if (weights && weights.length !== probs.length) throw new Error(`combineExits: ${weights.length} weights for ${probs.length} exits`);
  return tf.tidy(() => {
    if (probs.length === 1) return tf.clone(probs[0]);
    const P = tf.stack(probs) as tf.Tensor3D; // [K, n, V]
    if (rule === 'mean' || (rule === 'weighted' && !weights)) return tf.mean(P, 0) as tf.Tensor2D;
    if (rule === 'weighted') return tf.sum(tf.mul(P, tf.tensor3d(weights!, [weights!.length, 1, 1])), 0) as tf.Tensor2D;
    if (rule === 'max') {
      const m = tf.max(P, 0);
      return tf.div(m, tf.sum(m, -1, true)) as tf.Tensor2D;
    }
    const ent = tf.neg(tf.sum(tf.mul(P, tf.log(tf.add(P, 1e-12))), -1)); // [K, n]
    const w = tf.softmax(tf.transpose(tf.neg(ent)), -1); // [n, K]
    return tf.sum(tf.mul(P, tf.expandDims(tf.transpose(w), -1)), 0) as tf.Tensor2D;
  });
}

/** Index of the largest entry (the first on ties). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let c = 1; c < row.length; c++) if (row[c] > row[best]) best = c;
  return best;
}

/** The `weighted` vote's weights of a list of paths (uniform where any is missing). */
export function pathWeights(paths: ExitPath[]): number[] | undefined {
  return paths.every((p) => typeof p.weight === 'number') ? paths.map((p) => p.weight!) : undefined;
}

/**
 * Mixture weights w (w_k >= 0, sum 1) maximising the likelihood sum_n log sum_k w_k p[n][k] of the
 * correct targets, by EM (Dempster et al. 1977; the classic update for mixture proportions:
 * w_k <- mean_n w_k p_nk / sum_j w_j p_nj). The objective is concave in w, so EM converges to the optimum.
 * @param p [n][K] probability each exit gave the correct target of position n
 * @returns K weights; uniform when p is empty.
 */
export function fitExitWeights(p: ArrayLike<number>[], iterations = 200): number[] {
  const K = p[0]?.length ?? 0;
  if (!K) return [];
  let w = new Array(K).fill(1 / K);
  for (let it = 0; it < iterations; it++) {
    const next = new Array(K).fill(0);
    for (const row of p) {
      let z = 0;
      for (let k = 0; k < K; k++) z += w[k] * Math.max(row[k], 1e-12);
      for (let k = 0; k < K; k++) next[k] += (w[k] * Math.max(row[k], 1e-12)) / z;
    }
    w = next.map((x) => x / p.length);
  }
  return w;
}

/**
 * Per-exit next-token probabilities at selected positions.
 * @param ids [batch][seq] token ids (right padded)
 * @param rows flat indices b*seq+t of the positions to read
 * @param mask optional [batch][seq] key padding mask (needed with left padding)
 * @returns K tensors [rows.length, vocab]. Caller disposes.
 */
export function exitProbabilities(
  model: LlamaModel,
  paths: ExitPath[],
  ids: number[][],
  rows: Int32Array,
  mask?: number[][],
): tf.Tensor2D[] {
  return tf.tidy(() => {
    const B = ids.length,
      T = ids[0].length;
    const ctx = model.context({ batch: B, seq: T, attentionMask: mask?.flat() });
    const rowT = tf.tensor1d(rows, 'int32');
    // Backbone states at each path's start, computed once for all paths.
    const starts = new Map<number, tf.Tensor2D>();
    const needed = new Set(paths.map((p) => p.start));
    const lastStart = Math.max(...needed);
    let h = model.embed(tf.tensor1d(Int32Array.from(ids.flat()), 'int32'));
    for (let i = 0; i <= lastStart; i++) {
      if (needed.has(i)) starts.set(i, h);
      if (i < lastStart) h = model.layer(i, h, ctx, false);
    }
    // LoRA streams: paths with the same start share their layers (an adapted prefix: one stream for all).
    const streams = new Map<number, { next: number; h: tf.Tensor2D }>();
    return paths.map((p) => {
      const s = streams.get(p.start);
      const from = s && s.next <= p.layer + 1 ? s : { next: p.start, h: starts.get(p.start)! };
      let x = from.h;
      for (let i = from.next; i <= p.layer; i++) x = model.layer(i, x, ctx, true);
      streams.set(p.start, { next: p.layer + 1, h: x });
      const sel = tf.gather(x, rowT) as tf.Tensor2D;
      return tf.softmax(pathLogits(p, model.rmsNorm(sel, p.norm))) as tf.Tensor2D;
    });
  });
}
