// Pretraining produces a Hugging Face folder the engine loads, and the unigram baseline is right.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { pretrain, unigramPerplexity, DEFAULT_PRETRAIN } from '../../packages/lab/src/pretrain/pretrain.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';

let dir: string;
beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-pre-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('unigramPerplexity', () => {
  it('is the exponentiated cross-entropy of the add-one unigram fit', () => {
    const train = Int32Array.from([0, 0, 0, 1]); // counts+1: 4, 2 over total 6
    const ppl = unigramPerplexity(train, Int32Array.from([0, 1]), 2);
    expect(ppl).toBeCloseTo(Math.exp(-(Math.log(4 / 6) + Math.log(2 / 6)) / 2), 9);
  });
});

describe('pretrain', () => {
  it('trains a tokenizer and a tiny LLaMA, writes a loadable HF folder with a model card', async () => {
    const out = join(dir, 'm');
    const losses: number[] = [];
    const r = await pretrain({
      ...DEFAULT_PRETRAIN,
      outDir: out,
      vocabSize: 300,
      hiddenSize: 32,
      layers: 2,
      heads: 2,
      kvHeads: 1,
      intermediateSize: 64,
      seq: 32,
      batch: 4,
      steps: 40,
      lr: 1e-2,
      warmupSteps: 4,
      tokenizerChars: 200_000,
      evalTokens: 2048,
      corpusChars: 300_000,
      onStep: (s) => losses.push(s.loss),
    });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'pretrain_report.json'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(r.steps).toBe(40);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] - 0.5);
    expect(r.validation.perplexity).toBeGreaterThan(1);
    expect(r.validation.unigramPerplexity).toBeGreaterThan(1);
    const card = readFileSync(join(out, 'README.md'), 'utf8');
    expect(card).toMatch(/State of the Union/);
    expect(card).toMatch(/public domain/);
    expect(card.split('\n')).toContain(`# ${basename(out)}`); // the card is named after its folder
    const model = LlamaModel.load(out);
    const tok = await loadTokenizer(out);
    expect(model.config.vocabSize).toBe(tok.vocabSize);
    expect(tok.decode(tok.encode('The whale.', { addSpecialTokens: false }))).toBe('The whale.');
    model.dispose();
  });
});
