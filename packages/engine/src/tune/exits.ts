/**
 * Early-exit heads and windows of Edge-LLM's adaptive layer tuning (Yu et al., DAC 2024, section
 * "Adaptive Layer Tuning and Voting"):
 * exit k sits after decoder layer e_k; its window is layers (e_{k-1}, e_k]; its head is a copy of the
 * final RMSNorm followed by a copy of `lm_head` (the official code omits the norm, a bug we do not copy).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ExitConfigError, validateExitLayers } from '@edgetune/core';
import type { LlamaModel } from '../model/llama.js';
import { isTensor, matMulT, toTensor, type WeightMatrix } from '../backend/frozen.js';

/** One exit: the window of layers it trains and its own norm + head. */
export interface ExitHead {
  /** 0-based decoder layer whose output the exit reads. */
  layer: number;
  /** first layer of the window (the layer after the previous exit, or 0). */
  start: number;
  /** [hidden] copy of model.norm */
  norm: tf.Variable;
  /**
   * [vocab, hidden]: a trainable copy of lm_head, or with `lora` the model's own lm_head (shared, frozen; a
   * stored matrix outside the heap for 16-bit models)
   */
  head: WeightMatrix;
  /**
   * Low-rank head: logits use head + scale x B A (LoRA on the head, as PEFT's `lm_head` target; B starts
   * at zero, so the exit starts as lm_head exactly). A [r, hidden], B [vocab, r]. Per exit this trains
   * r (vocab + hidden) parameters instead of vocab x hidden, and AdamW keeps two moments of that size:
   * at LLaMA-7B scale (vocab 32000, hidden 4096, float32) 4 full heads with moments take ~6.3 GB, 4 rank-16
   * heads ~28 MB.
   */
  lora?: { A: tf.Variable; B: tf.Variable; scale: number };
}

/**
 * Creates exit heads initialised from the model's final norm and lm_head.
 * @param headRank 0: each head is a full trainable copy of lm_head (official code); r > 0: each head is
 *   the shared lm_head plus a rank-r LoRA (alpha = 2r), A from `rng` like PEFT's kaiming-uniform, B zero.
 * @param rng uniform [0, 1) source for A (required when headRank > 0)
 */
export function createExits(model: LlamaModel, layers: number[], headRank = 0, rng?: () => number): ExitHead[] {
  const s = validateExitLayers(layers, model.config.numHiddenLayers);
  if (headRank < 0 || !Number.isInteger(headRank)) throw new ExitConfigError(`head rank must be a non-negative integer, got ${headRank}`);
  const d = model.config.hiddenSize,
    V = model.config.vocabSize;
  return s.map((layer, k) => {
    const base = { layer, start: k === 0 ? 0 : s[k - 1] + 1, norm: tf.variable(tf.clone(model.finalNorm), true) };
    if (!headRank)
      return { ...base, head: tf.variable(isTensor(model.lmHead) ? tf.clone(model.lmHead) : toTensor(model.lmHead), true) as tf.Tensor2D };
    const bound = 1 / Math.sqrt(d); // kaiming_uniform(a=sqrt(5)) on [r, d], as PEFT initialises lora_A
    const a = Float32Array.from({ length: headRank * d }, () => (2 * rng!() - 1) * bound);
    return {
      ...base,
      head: model.lmHead,
      lora: { A: tf.variable(tf.tensor2d(a, [headRank, d]), true), B: tf.variable(tf.zeros([V, headRank]), true), scale: 2 },
    };
  });
}

/**
 * Exit logits for normalised hidden states x [n, hidden]: x head^T (+ scale (x A^T) B^T for a low-rank
 * head). Returns [n, vocab].
 */
export function exitLogits(e: ExitHead, x: tf.Tensor2D): tf.Tensor2D {
  const y = matMulT(x, e.head);
  if (!e.lora) return y;
  return tf.add(y, tf.mul(tf.matMul(tf.matMul(x, e.lora.A, false, true), e.lora.B, false, true), e.lora.scale)) as tf.Tensor2D;
}

/**
 * Turns low-rank heads into dense ones (head + scale B A, a new tensor per exit) once training is over,
 * so inference, evaluation and saving see one [vocab, hidden] head per exit. No-op for full heads, and
 * for heads over a stored lm_head (a float32 [vocab, hidden] per exit is what keeping lm_head outside the
 * heap avoids: those keep their LoRA through inference and are saved as factors).
 */
export function materializeHeads(exits: ExitHead[]): void {
  for (const e of exits) {
    if (!e.lora || !isTensor(e.head)) continue;
    const { A, B, scale } = e.lora;
    const head = e.head;
    e.head = tf.tidy(() => tf.add(head, tf.mul(tf.matMul(B, A), scale)) as tf.Tensor2D);
    A.dispose();
    B.dispose();
    delete e.lora;
  }
}

/** The layers of exit k's window. */
export function windowLayers(e: ExitHead): number[] {
  const out: number[] = [];
  for (let i = e.start; i <= e.layer; i++) out.push(i);
  return out;
}

/** Disposes the exits' own tensors (a low-rank head's base is the model's lm_head: kept). */
export function disposeExits(exits: ExitHead[]): void {
  for (const e of exits) {
    e.norm.dispose();
    if (e.lora) {
      e.lora.A.dispose();
      e.lora.B.dispose();
    } else if (isTensor(e.head)) e.head.dispose();
  }
}
