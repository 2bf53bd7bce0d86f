/**
 * Exit voting (Edge-LLM "voting", edge-llm.md §4): every exit path gives a next-token distribution and
 * a rule combines them. Exit k's path is the frozen backbone (no LoRA) up to its window, the window with
 * its LoRA, then its own norm + head, exactly the computation it was trained on.
 */
import * as tf from '@tensorflow/tfjs';
import type { LlamaModel } from '../model/llama.js';

/** `max`: element-wise max over exits, renormalised (official code); `mean`: average;
 *  `confidence`: per-row weights softmax_k(-H(P_k)) (lower entropy, more weight). */
export type VotingRule = 'max' | 'mean' | 'confidence';
export const VOTING_RULES: VotingRule[] = ['max', 'mean', 'confidence'];

/** One exit path for inference (a trained ExitHead, or the plain final norm + lm_head). */
export interface ExitPath {
  /** layer whose output the head reads (0-based) */
  layer: number;
  /** first layer that runs with LoRA on this path */
  start: number;
  /** [hidden] */
  norm: tf.Tensor1D;
  /** [vocab, hidden] */
  head: tf.Tensor2D;
}

/**
 * Combines per-exit probabilities.
 * @param probs K tensors [n, vocab], each row a distribution.
 * @returns [n, vocab] rows summing to 1. Caller disposes.
 */
export function combineExits(probs: tf.Tensor2D[], rule: VotingRule): tf.Tensor2D {
  return tf.tidy(() => {
    if (probs.length === 1) return tf.clone(probs[0]);
    const P = tf.stack(probs) as tf.Tensor3D; // [K, n, V]
    if (rule === 'mean') return tf.mean(P, 0) as tf.Tensor2D;
    if (rule === 'max') {
      const m = tf.max(P, 0);
      return tf.div(m, tf.sum(m, -1, true)) as tf.Tensor2D;
    }
    const ent = tf.neg(tf.sum(tf.mul(P, tf.log(tf.add(P, 1e-12))), -1)); // [K, n]
    const w = tf.softmax(tf.transpose(tf.neg(ent)), -1); // [n, K]
    return tf.sum(tf.mul(P, tf.expandDims(tf.transpose(w), -1)), 0) as tf.Tensor2D;
  });
}

/**
 * Per-exit next-token probabilities at selected positions.
 * @param ids [batch][seq] token ids (right padded)
 * @param rows flat indices b*seq+t of the positions to read
 * @param mask optional [batch][seq] key padding mask (needed with left padding)
 * @returns K tensors [rows.length, vocab]. Caller disposes.
 */
export function exitProbabilities(model: LlamaModel, paths: ExitPath[], ids: number[][], rows: Int32Array, mask?: number[][]): tf.Tensor2D[] {
  return tf.tidy(() => {
    const B = ids.length, T = ids[0].length;
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
    return paths.map((p) => {
      let x = starts.get(p.start)!;
      for (let i = p.start; i <= p.layer; i++) x = model.layer(i, x, ctx, true);
      const sel = tf.gather(x, rowT) as tf.Tensor2D;
      return tf.softmax(tf.matMul(model.rmsNorm(sel, p.norm), p.head, false, true)) as tf.Tensor2D;
    });
  });
}
