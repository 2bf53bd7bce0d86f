/**
 * Key/value cache of exit paths for incremental decoding (HF `past_key_values`): the prompt runs once
 * (prefill), then each new token runs alone through the layers, attending to the cached keys/values.
 *
 * Paths share layers as in `exitProbabilities` (voting.ts): the frozen backbone (no LoRA) below the deepest
 * path start is computed once, and paths with the same start share one LoRA stream from that start;
 * each distinct layer stack keeps its own cache, so every layer runs once per token.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayerKV, LlamaModel } from '../model/llama.js';
import { pathLogits, type ExitPath } from './voting.js';
import { isTensor } from '../backend/frozen.js';

/** One layer stack: layers from..to-1 with LoRA on or off, and each layer's keys/values. */
interface Stack {
  from: number;
  to: number;
  lora: boolean;
  kv: (LayerKV | null)[];
}

/**
 * Per-path KV cache for one batch of sequences. Dispose it when generation ends.
 *
 * Memory: per cached layer 2 * batch * kvHeads * min(T, slidingWindow) * headDim * 4 bytes (float32),
 * T the tokens run so far.
 */
export class ExitKvCache {
  /** tokens run so far per sequence (the absolute position of the next one) */
  length = 0;
  private readonly backbone: Stack;
  /** LoRA streams by path start */
  private readonly streams = new Map<number, Stack>();

  /** @throws Error when `paths` is empty. */
  constructor(
    readonly model: LlamaModel,
    readonly paths: ExitPath[],
  ) {
    if (!paths.length) throw new Error('ExitKvCache: no exit paths');
    const lastStart = Math.max(...paths.map((p) => p.start));
    this.backbone = { from: 0, to: lastStart, lora: false, kv: [] };
    for (const p of paths) {
      const s = this.streams.get(p.start);
      const to = Math.max(p.layer + 1, s?.to ?? p.start);
      this.streams.set(p.start, { from: p.start, to, lora: true, kv: [] });
    }
  }

  /**
   * Runs the next tokens of every sequence: the whole prompt first (cache empty), then one token at a
   * time. Positions continue from {@link length}.
   * @param ids [batch][seq] token ids (seq 1 once the cache holds tokens)
   * @returns per path, in `paths` order, the next-token probabilities after each sequence's last new
   *   token, [batch, vocab]. Caller disposes.
   * @throws Error for several tokens after the prompt (LlamaModel.layerCached).
   */
  step(ids: number[][]): tf.Tensor2D[] {
    const B = ids.length,
      T = ids[0].length;
    const rope = this.model.ropeRows(this.length, T);
    const step = { batch: B, seq: T, cos: rope.cos, sin: rope.sin };
    try {
      return tf.tidy(() => {
        let h = this.model.embed(tf.tensor1d(Int32Array.from(ids.flat()), 'int32'));
        // Backbone state entering each layer up to the deepest start, then each stream's outputs.
        const entering = [h];
        for (let i = 0; i < this.backbone.to; i++) entering.push((h = this.runLayer(this.backbone, i, h, step)));
        const outputs = new Map<number, tf.Tensor2D[]>();
        for (const [start, s] of this.streams) {
          let x = entering[start];
          const out: tf.Tensor2D[] = [];
          for (let i = start; i < s.to; i++) out.push((x = this.runLayer(s, i, x, step)));
          outputs.set(start, out);
        }
        const last = tf.tensor1d(
          Array.from({ length: B }, (_, b) => b * T + T - 1),
          'int32',
        );
        return this.paths.map((p) => {
          // A path reads its layer's output; a path whose start lies past its layer reads the backbone state at its start (as exitProbabilities).
          const x = p.layer >= p.start ? outputs.get(p.start)![p.layer - p.start] : entering[p.start];
          const sel = tf.gather(x, last) as tf.Tensor2D;
          const xn = this.model.rmsNormInference(sel, p.norm);
          // A single row through a tensor head: the faster (W x^T)^T form of linearInference.
          const logits =
            isTensor(p.head) && !p.headLora
              ? this.model.linearInference({ name: 'lm_head', weight: p.head }, xn, false)
              : pathLogits(p, xn);
          return tf.softmax(logits) as tf.Tensor2D;
        });
      });
    } finally {
      tf.dispose([rope.cos, rope.sin]);
      this.length += T;
    }
  }

  /** Runs layer i of a stack on h, replacing its cached keys/values (kept past the caller's tidy). */
  private runLayer(s: Stack, i: number, h: tf.Tensor2D, step: Parameters<LlamaModel['layerCached']>[2]): tf.Tensor2D {
    const past = s.kv[i - s.from] ?? null;
    const r = this.model.layerCached(i, h, step, past, s.lora);
    if (past) tf.dispose([past.k, past.v]);
    s.kv[i - s.from] = { k: tf.keep(r.kv.k), v: tf.keep(r.kv.v) };
    return r.h;
  }

  /** Frees every cached tensor and empties the cache (length 0). */
  reset(): void {
    for (const s of [this.backbone, ...this.streams.values()]) {
      for (const kv of s.kv) if (kv) tf.dispose([kv.k, kv.v]);
      s.kv = [];
    }
    this.length = 0;
  }

  /** Same as {@link reset}: call when generation ends. */
  dispose(): void {
    this.reset();
  }
}
