/**
 * Early-exit heads and windows of Edge-LLM's adaptive layer tuning (edge-llm.md §3.1, §3.2):
 * exit k sits after decoder layer e_k; its window is layers (e_{k-1}, e_k]; its head is a copy of the
 * final RMSNorm followed by a copy of `lm_head` (the official code omits the norm, a bug we do not copy).
 */
import * as tf from '@tensorflow/tfjs';
import type { LlamaModel } from '../model/llama.js';

/** One exit: the window of layers it trains and its own norm + head. */
export interface ExitHead {
  /** 0-based decoder layer whose output the exit reads. */
  layer: number;
  /** first layer of the window (the layer after the previous exit, or 0). */
  start: number;
  /** [hidden] copy of model.norm */
  norm: tf.Variable;
  /** [vocab, hidden] copy of lm_head */
  head: tf.Variable;
}

/** Error for an invalid exit layout. */
export class ExitConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExitConfigError';
  }
}

/**
 * Default exit layers: every L/4 layers, the last exit on the last layer (official code: stride 8 on
 * 32 layers gives 7, 15, 23, 31). With fewer than 4 layers every layer is an exit.
 * @param count number of exits (default 4).
 */
export function defaultExitLayers(numLayers: number, count = 4): number[] {
  const n = Math.min(count, numLayers);
  const out = new Set<number>();
  for (let k = 1; k <= n; k++) out.add(Math.round((numLayers * k) / n) - 1);
  return [...out].sort((a, b) => a - b);
}

/**
 * Validates exit layers: sorted, unique, in range, last one = last layer.
 * @throws ExitConfigError
 */
export function validateExitLayers(layers: number[], numLayers: number): number[] {
  if (!layers.length) throw new ExitConfigError('exit_layers must not be empty');
  const s = [...layers].sort((a, b) => a - b);
  for (let i = 0; i < s.length; i++) {
    if (!Number.isInteger(s[i]) || s[i] < 0 || s[i] >= numLayers) throw new ExitConfigError(`exit layer ${s[i]} is outside 0..${numLayers - 1}`);
    if (i > 0 && s[i] === s[i - 1]) throw new ExitConfigError(`exit layer ${s[i]} is listed twice`);
  }
  if (s[s.length - 1] !== numLayers - 1) throw new ExitConfigError(`the last exit must be the last layer (${numLayers - 1}), got ${s[s.length - 1]}`);
  return s;
}

/** Creates exit heads initialised from the model's final norm and lm_head. */
export function createExits(model: LlamaModel, layers: number[]): ExitHead[] {
  const s = validateExitLayers(layers, model.config.numHiddenLayers);
  return s.map((layer, k) => ({
    layer,
    start: k === 0 ? 0 : s[k - 1] + 1,
    norm: tf.variable(tf.clone(model.finalNorm), true),
    head: tf.variable(tf.clone(model.lmHead), true),
  }));
}

/** The layers of exit k's window. */
export function windowLayers(e: ExitHead): number[] {
  const out: number[] = [];
  for (let i = e.start; i <= e.layer; i++) out.push(i);
  return out;
}

export function disposeExits(exits: ExitHead[]): void {
  for (const e of exits) { e.norm.dispose(); e.head.dispose(); }
}
