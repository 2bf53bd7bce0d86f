/**
 * Zero-shot last-word prediction on held-out text, LAMBADA-style (Paperno et al., ACL 2016): given the text
 * before a sentence's final word, the model's greedy continuation must reproduce every token of that word
 * (lm-evaluation-harness's `lambada` `acc`). Compression papers report such zero-shot task accuracy beside
 * perplexity (SparseGPT §4 uses LAMBADA; Wanda and OWL use zero-shot tasks): it compares LUC and a uniform
 * policy on a task before any tuning.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaModel } from '../model/llama.js';
import type { EngineTokenizer } from '../tokenizer/index.js';

/** One item: `context` token ids (exactly the requested length) and the target word's token ids. */
export interface LastWordItem {
  context: number[];
  /** tokens of " word" (leading space included, as byte-level BPE splits it) */
  target: number[];
  word: string;
}

/** Options of {@link lastWordItems}. */
export interface LastWordOptions {
  /** context length, tokens (default 64); words with less text before them in their document are skipped */
  contextTokens?: number;
  /** shortest target word, letters (default 3: skips "a", "of", ...) */
  minWordChars?: number;
  /** cap on items, taken evenly spaced over all candidates (default: all) */
  maxItems?: number;
}

/**
 * Builds last-word items from documents: every word of `minWordChars`+ letters that ends a sentence
 * (followed by `.`, `!` or `?`, optionally a closing quote or bracket, then whitespace or the end) and is
 * preceded by a space. Items whose tokenization of "context + ' ' + word" does not extend the context's
 * own tokenization are skipped (a BPE merge across the boundary would leak the word into the context).
 * @param docs documents, e.g. the pretraining corpus's validation split (`loadPretrainCorpus().validation`).
 * @returns items in document order (deterministic).
 */
export function lastWordItems(tok: EngineTokenizer, docs: readonly { text: string }[], o: LastWordOptions = {}): LastWordItem[] {
  const C = o.contextTokens ?? 64,
    minChars = o.minWordChars ?? 3;
  const re = new RegExp(`(?<= )([A-Za-z]{${minChars},})(?=[.!?]["'’”)\\]]?(?:\\s|$))`, 'g');
  const all: LastWordItem[] = [];
  for (const d of docs) {
    for (const m of d.text.matchAll(re)) {
      // Enough characters to hold C tokens (a token is at least one byte); the first, maybe cut, token is dropped.
      const before = d.text.slice(Math.max(0, m.index! - 1 - 8 * C), m.index! - 1);
      const ctx = tok.encode(before, { addSpecialTokens: false });
      if (ctx.length < C + 1) continue;
      const full = tok.encode(`${before} ${m[1]}`, { addSpecialTokens: false });
      if (full.length <= ctx.length || ctx.some((id, i) => full[i] !== id)) continue;
      all.push({ context: ctx.slice(ctx.length - C), target: full.slice(ctx.length), word: m[1] });
    }
  }
  const n = o.maxItems ?? all.length;
  if (n >= all.length) return all;
  return Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]);
}

/** Result of {@link lastWordAccuracy}. */
export interface LastWordReport {
  items: number;
  /** fraction of items whose every target token is the argmax, in [0, 1] */
  accuracy: number;
  /** per item: 1 when correct (for paired comparisons, {@link pairedSignTest}) */
  correct: Uint8Array;
  /** mean log-probability of the whole target word, nats */
  meanLogProb: number;
}

/**
 * Scores items with the base model (no LoRA): one teacher-forced forward per batch over context + target
 * (minus its last token), right-padded, so the causal mask keeps padding out of every scored position.
 * @param batch items per forward (default 16); memory ~ batch x (contextTokens + longest target) x vocab x 4 bytes
 *   for the gathered rows only.
 * @throws RangeError when `items` is empty.
 */
export function lastWordAccuracy(model: LlamaModel, items: readonly LastWordItem[], batch = 16): LastWordReport {
  if (!items.length) throw new RangeError('lastWordAccuracy: no items');
  const correct = new Uint8Array(items.length);
  let logProb = 0;
  for (let i0 = 0; i0 < items.length; i0 += batch) {
    const group = items.slice(i0, i0 + batch);
    const T = Math.max(...group.map((it) => it.context.length + it.target.length - 1));
    const ids = new Int32Array(group.length * T); // pad with 0: right padding never reaches a scored position
    const rows: number[] = [],
      targets: number[] = [],
      owner: number[] = [];
    group.forEach((it, b) => {
      const seq = [...it.context, ...it.target.slice(0, -1)];
      ids.set(seq, b * T);
      it.target.forEach((t, j) => {
        rows.push(b * T + it.context.length - 1 + j);
        targets.push(t);
        owner.push(b);
      });
    });
    const out = tf.tidy(() => {
      const ctx = model.context({ batch: group.length, seq: T });
      let h = model.embed(tf.tensor1d(ids, 'int32'));
      for (let l = 0; l < model.layers.length; l++) h = model.layer(l, h, ctx, false);
      const x = model.rmsNorm(tf.gather(h, tf.tensor1d(rows, 'int32')) as tf.Tensor2D, model.finalNorm);
      const lp = tf.logSoftmax(model.headLogits(x));
      return [tf.sum(tf.mul(lp, tf.oneHot(tf.tensor1d(targets, 'int32'), lp.shape[1]!)), 1), tf.argMax(lp, 1)];
    });
    const logp = out[0].dataSync() as Float32Array,
      best = out[1].dataSync() as Int32Array;
    tf.dispose(out);
    const ok = new Uint8Array(group.length).fill(1);
    for (let r = 0; r < rows.length; r++) {
      if (best[r] !== targets[r]) ok[owner[r]] = 0;
      logProb += logp[r];
    }
    correct.set(ok, i0);
  }
  let n = 0;
  for (const c of correct) n += c;
  return { items: items.length, accuracy: n / items.length, correct, meanLogProb: logProb / items.length };
}

/**
 * Exact two-sided sign test (McNemar's exact test) on paired 0/1 outcomes of the same items:
 * `aOnly` items only `a` got right, `bOnly` only `b`; p = P(as extreme | each discordant item is a fair coin).
 * @throws RangeError when the arrays differ in length.
 */
export function pairedSignTest(a: Uint8Array, b: Uint8Array): { aOnly: number; bOnly: number; p: number } {
  if (a.length !== b.length) throw new RangeError(`pairedSignTest: ${a.length} vs ${b.length} items`);
  let aOnly = 0,
    bOnly = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) aOnly++;
    else if (b[i] && !a[i]) bOnly++;
  }
  const n = aOnly + bOnly,
    k = Math.min(aOnly, bOnly);
  // P(X <= k) for X ~ Binomial(n, 1/2), in log space (n can be thousands).
  let lc = -n * Math.LN2,
    tail = 0; // log C(n, 0) / 2^n
  for (let i = 0; i <= k; i++) {
    tail += Math.exp(lc);
    lc += Math.log(n - i) - Math.log(i + 1);
  }
  return { aOnly, bOnly, p: Math.min(1, 2 * tail) };
}
