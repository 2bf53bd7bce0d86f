// Zero-shot last-word accuracy (LAMBADA-style), the task measure the bench compares LUC and uniform policies with.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadTokenizer, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { lastWordItems, lastWordAccuracy, pairedSignTest } from '../../packages/engine/src/infer/last-word.js';
import { loadPretrainCorpus } from '../../packages/lab/src/pretrain/corpus.js';
import { REPO_ROOT } from './helpers.js';

const MODEL = join(REPO_ROOT, 'models', 'edgetune-tiny-llama');
let tok: EngineTokenizer;
let model: LlamaModel;

beforeAll(async () => {
  await initBackend({ quiet: true });
  tok = await loadTokenizer(MODEL);
  model = LlamaModel.load(MODEL);
});
afterAll(() => model.dispose());

describe('lastWordItems', () => {
  it('takes sentence-final words after a space, with exactly the requested context', () => {
    const filler = 'The ship sailed on through the long grey night while the crew slept below the deck. '.repeat(4);
    const docs = [{ text: `${filler}He looked at the whale. Then it was gone! Is it a? No ${filler}` }, { text: 'Too short here.' }];
    const items = lastWordItems(tok, docs, { contextTokens: 16 });
    // "deck" x4 in the first filler (the second filler's "deck"s too), "whale", "gone"; not "a" (too short), not "No".
    const words = items.map((i) => i.word);
    expect(words).toContain('whale');
    expect(words).toContain('gone');
    expect(words).not.toContain('a');
    expect(words).not.toContain('Too'); // the short document has no 16-token context
    for (const it of items) {
      expect(it.context).toHaveLength(16);
      expect(tok.decode(it.target)).toBe(` ${it.word}`);
    }
    const whale = items.find((i) => i.word === 'whale')!;
    expect(tok.decode(whale.context)).toMatch(/He looked at the$/);
    expect(lastWordItems(tok, docs, { contextTokens: 16, maxItems: 2 })).toHaveLength(2);
  });
});

describe('lastWordAccuracy', () => {
  it('marks an item correct exactly when greedy decoding reproduces every target token', () => {
    const items = lastWordItems(tok, loadPretrainCorpus().validation, { contextTokens: 24, maxItems: 40 });
    const r = lastWordAccuracy(model, items, 7); // batches of mixed target lengths, padded
    expect(r.items).toBe(40);
    // Independent check: one full forward per item, argmax at each target position.
    let logProb = 0;
    items.forEach((it, i) => {
      const seq = [...it.context, ...it.target.slice(0, -1)];
      const { logits } = model.forward([seq]);
      const lp = tf.tidy(() => tf.logSoftmax(tf.squeeze(logits, [0])).arraySync() as number[][]);
      logits.dispose();
      let ok = 1;
      it.target.forEach((t, j) => {
        const row = lp[it.context.length - 1 + j];
        if (row.indexOf(Math.max(...row)) !== t) ok = 0;
        logProb += row[t];
      });
      expect(r.correct[i], `item ${i} (${it.word})`).toBe(ok);
    });
    expect(r.meanLogProb).toBeCloseTo(logProb / items.length, 3);
  });

  it('a real language model predicts some words; the same layers in reverse order predict far fewer', () => {
    const items = lastWordItems(tok, loadPretrainCorpus().validation, { contextTokens: 32, maxItems: 400 });
    const good = lastWordAccuracy(model, items);
    const broken = LlamaModel.load(MODEL);
    broken.layers.reverse(); // decoder layers in reverse order: the same weights, a broken model
    const bad = lastWordAccuracy(broken, items);
    broken.dispose();
    expect(good.accuracy).toBeGreaterThan(0.03);
    expect(bad.meanLogProb).toBeLessThan(good.meanLogProb - 1);
    expect(pairedSignTest(good.correct, bad.correct).aOnly).toBeGreaterThan(pairedSignTest(good.correct, bad.correct).bOnly);
  });
});

describe('pairedSignTest', () => {
  it('is the exact two-sided binomial test on discordant pairs', () => {
    const a = Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0]);
    const b = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]);
    const r = pairedSignTest(a, b);
    expect(r).toMatchObject({ aOnly: 9, bOnly: 1 });
    expect(r.p).toBeCloseTo((2 * (1 + 10)) / 1024, 12); // 2 P(X <= 1), X ~ Bin(10, 1/2)
    expect(pairedSignTest(a, a).p).toBe(1);
    expect(() => pairedSignTest(a, b.subarray(1))).toThrow(RangeError);
  });
});
