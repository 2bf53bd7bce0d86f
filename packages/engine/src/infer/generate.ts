/**
 * Generation and label scoring with exit voting: at every step each exit path gives a next-token
 * distribution and the voting rule combines them (Edge-LLM, Yu et al., DAC 2024, §4). Generation
 * prefills the prompt once and then decodes one token per step against a KV cache (kv-cache.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaModel } from '../model/llama.js';
import { Rng } from '../util/rng.js';
import { ExitKvCache } from './kv-cache.js';
import { argmax, combineExits, exitProbabilities, pathWeights, type ExitPath, type VotingRule } from './voting.js';

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** new tokens at most */
  maxNewTokens: number;
  rule: VotingRule;
  /** 0 = greedy */
  temperature?: number;
  /** stop tokens (eos) */
  stopIds?: number[];
  seed?: number;
  /** longest context kept (tokens); older tokens are dropped from the left */
  maxContext?: number;
  /**
   * true (default): prefill the prompt once, then run one token per step against a KV cache per layer
   * stack ({@link ExitKvCache}). false: rerun the whole context at every step (the reference the cached
   * path is tested against; same tokens).
   */
  kvCache?: boolean;
  /** called with each new token (stop token excluded) as it is chosen; returning false ends generation there */
  onToken?: (id: number) => boolean | undefined;
}

/**
 * Generates a continuation of `prompt` (token ids), voting over the exit paths at every token.
 * Once the context passes `maxContext`, tokens drop from the left and positions restart at 0, so the
 * cached path then re-prefills the kept context at each step (as the rerun does).
 * @returns the new token ids (stop token excluded).
 * @throws Error when `prompt` or `paths` is empty.
 */
export function generate(model: LlamaModel, paths: ExitPath[], prompt: number[], o: GenerateOptions): number[] {
  if (!prompt.length) throw new Error('generate: empty prompt');
  if (o.kvCache === false) return generateRerun(model, paths, prompt, o);
  const out: number[] = [];
  const rng = new Rng(o.seed ?? 0);
  const ctxLen = o.maxContext ?? model.config.maxPositionEmbeddings;
  if (o.maxNewTokens <= 0) return out;
  const cache = new ExitKvCache(model, paths);
  try {
    let probs = cache.step([prompt.slice(-ctxLen)]);
    for (;;) {
      const next = nextToken(probs, o, paths, rng);
      if (o.stopIds?.includes(next)) break;
      out.push(next);
      if (o.onToken?.(next) === false || out.length >= o.maxNewTokens) break;
      if (cache.length < ctxLen) probs = cache.step([[next]]);
      else {
        cache.reset();
        probs = cache.step([[...prompt, ...out].slice(-ctxLen)]);
      }
    }
  } finally {
    cache.dispose();
  }
  return out;
}

/**
 * Greedy generation for several prompts of the same length at once: one batched KV cache, the same vote at
 * every token as {@link generate} (greedy, same tokens up to float rounding of batched matmuls). A row stops
 * at a stop token or at its own token budget; the batch runs until every row has stopped or the context
 * (`maxPositionEmbeddings`) is full. A stopped row keeps being fed its last token, its outputs ignored.
 * @param prompts [batch][seq] token ids, every row the same length
 * @param o.maxNewTokens new tokens at most, per row or one number for all
 * @returns per row the new token ids (stop token excluded).
 * @throws Error when `prompts` is empty, a row is empty, rows differ in length, a budget list has the wrong
 *   length, or a prompt fills the context.
 */
export function generateBatch(
  model: LlamaModel,
  paths: ExitPath[],
  prompts: number[][],
  o: { maxNewTokens: number | number[]; rule: VotingRule; stopIds?: number[] },
): number[][] {
  const B = prompts.length,
    T = prompts[0]?.length ?? 0;
  if (!B || !T) throw new Error('generateBatch: empty prompt');
  if (prompts.some((p) => p.length !== T)) throw new Error('generateBatch: prompts must have the same length');
  const ctxLen = model.config.maxPositionEmbeddings;
  if (T >= ctxLen) throw new Error(`generateBatch: prompt of ${T} tokens fills the context of ${ctxLen}`);
  const budget = typeof o.maxNewTokens === 'number' ? new Array(B).fill(o.maxNewTokens) : o.maxNewTokens;
  if (budget.length !== B) throw new Error(`generateBatch: ${budget.length} token budgets for ${B} prompts`);
  const out = prompts.map(() => [] as number[]);
  const done = budget.map((n) => n <= 0);
  if (done.every(Boolean)) return out;
  const weights = pathWeights(paths);
  const cache = new ExitKvCache(model, paths);
  try {
    let probs = cache.step(prompts);
    for (;;) {
      const voted = combineExits(probs, o.rule, weights);
      const p = voted.dataSync() as Float32Array;
      const V = p.length / B;
      tf.dispose([...probs, voted]);
      const next = out.map((_, b) => argmax(p.subarray(b * V, (b + 1) * V)));
      next.forEach((t, b) => {
        if (done[b]) return;
        if (o.stopIds?.includes(t)) done[b] = true;
        else if (out[b].push(t) >= budget[b]) done[b] = true;
      });
      if (done.every(Boolean) || cache.length >= ctxLen) break;
      probs = cache.step(next.map((t) => [t]));
    }
  } finally {
    cache.dispose();
  }
  return out;
}

/** {@link generate} without a cache: each step reruns the (last maxContext tokens of the) context. */
function generateRerun(model: LlamaModel, paths: ExitPath[], prompt: number[], o: GenerateOptions): number[] {
  const out: number[] = [];
  const rng = new Rng(o.seed ?? 0);
  const ctxLen = o.maxContext ?? model.config.maxPositionEmbeddings;
  for (let s = 0; s < o.maxNewTokens; s++) {
    const ids = [...prompt, ...out].slice(-ctxLen);
    const next = nextToken(exitProbabilities(model, paths, [ids], Int32Array.of(ids.length - 1)), o, paths, rng);
    if (o.stopIds?.includes(next)) break;
    out.push(next);
    if (o.onToken?.(next) === false) break;
  }
  return out;
}

/** Votes over per-path probabilities [1, vocab] (disposed here) and picks the next token: greedy, or sampled from p^(1/T). */
function nextToken(probs: tf.Tensor2D[], o: GenerateOptions, paths: ExitPath[], rng: Rng): number {
  const voted = combineExits(probs, o.rule, pathWeights(paths));
  const p = voted.dataSync() as Float32Array;
  tf.dispose([...probs, voted]);
  if (!o.temperature) return argmax(p);
  // Sample from p^(1/T), renormalised.
  const w = Array.from(p, (x) => x ** (1 / o.temperature!));
  const z = w.reduce((a, b) => a + b, 0);
  let u = rng.next() * z;
  for (let i = 0; i < w.length; i++) {
    u -= w[i];
    if (u <= 0) return i;
  }
  return w.length - 1;
}

/**
 * Scores candidate labels for each prompt by the voted probability of their first token at the end of
 * the prompt (the first tokens must differ).
 * @param prompts token ids per prompt
 * @param labelFirstTokens first token id of each label
 * @returns per prompt: the winning label index and the voted probabilities of every label (renormalised over labels)
 * @throws Error when two labels share a first token.
 */
export function classify(
  model: LlamaModel,
  paths: ExitPath[],
  prompts: number[][],
  labelFirstTokens: number[],
  rule: VotingRule,
  batchSize = 16,
): { label: number; probs: number[]; perExit: number[] }[] {
  if (new Set(labelFirstTokens).size !== labelFirstTokens.length) throw new Error('labels must start with different tokens');
  const res: { label: number; probs: number[]; perExit: number[] }[] = [];
  for (let i = 0; i < prompts.length; i += batchSize) {
    const chunk = prompts.slice(i, i + batchSize);
    const T = Math.max(...chunk.map((p) => p.length));
    const ids = chunk.map((p) => [...p, ...new Array(T - p.length).fill(0)]);
    const rows = Int32Array.from(chunk.map((p, b) => b * T + p.length - 1));
    const probs = exitProbabilities(model, paths, ids, rows);
    const voted = combineExits(probs, rule, pathWeights(paths));
    const sub = (t: tf.Tensor2D) => tf.tidy(() => tf.gather(t, tf.tensor1d(labelFirstTokens, 'int32'), 1).arraySync() as number[][]);
    const v = sub(voted);
    const per = probs.map(sub);
    tf.dispose([...probs, voted]);
    v.forEach((row, b) => {
      const z = row.reduce((a, x) => a + x, 0) || 1;
      res.push({ label: argmax(row), probs: row.map((x) => x / z), perExit: per.map((pr) => argmax(pr[b])) });
    });
  }
  return res;
}
