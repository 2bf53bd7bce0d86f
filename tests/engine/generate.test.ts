// Generation with a KV cache per exit path: the same tokens as rerunning the context, freed at the end.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { applyPeftAdapter, DEFAULT_LORA } from '../../packages/engine/src/model/lora.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { AdaptiveTrainer, DEFAULT_TUNE } from '../../packages/engine/src/tune/trainer.js';
import { loadExamples } from '../../packages/engine/src/tune/run.js';
import { materializeHeads } from '../../packages/engine/src/tune/exits.js';
import { pathsOf, plainPath } from '../../packages/engine/src/tune/artifacts.js';
import { generate, type GenerateOptions } from '../../packages/engine/src/infer/generate.js';
import { VOTING_RULES, type ExitPath } from '../../packages/engine/src/infer/voting.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { FIXTURE_DIR, REPO_ROOT } from './helpers.js';

let dir: string;
let model: LlamaModel;
let trainer: AdaptiveTrainer;

/** Random prompt ids in [4, vocab) (past the special tokens). */
function prompt(n: number, seed: number, vocab = model.config.vocabSize): number[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => 4 + r.int(vocab - 4));
}

/** Both implementations on the same input; returns the cached one's tokens after checking equality. */
function same(m: LlamaModel, paths: ExitPath[], ids: number[], o: GenerateOptions): number[] {
  const cached = generate(m, paths, ids, o);
  const rerun = generate(m, paths, ids, { ...o, kvCache: false });
  expect(cached).toEqual(rerun);
  return cached;
}

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-generate-'));
  const modelDir = join(dir, 'model');
  createTinyModel(modelDir, { layers: 4 });
  writeToyTask(join(dir, 'train.jsonl'), 32, 1);
  const tok = await loadTokenizer(modelDir);
  const { examples } = await loadExamples(join(dir, 'train.jsonl'), tok, 64);
  model = LlamaModel.load(modelDir);
  // A short tuning run: LoRA on every window and a trained head per exit (layers 0..3).
  const lora = { ...DEFAULT_LORA, r: 4, alpha: 8, dropout: 0 };
  trainer = new AdaptiveTrainer(
    model,
    examples,
    { ...DEFAULT_TUNE, lora, steps: 8, microBatch: 4, warmupSteps: 0, lr: 3e-2, schedule: 'round_robin' },
    tok.padId!,
  );
  while (trainer.state.step < 8) await trainer.step();
  materializeHeads(trainer.exits);
});
afterAll(() => {
  trainer.optimizer.dispose();
  model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('generate with a KV cache', () => {
  it('greedy: the same tokens as rerunning the context, on the plain path (lm_head, the LoRA on every layer)', () => {
    const out = same(model, [plainPath(model)], prompt(20, 1), { maxNewTokens: 24, rule: 'max' });
    expect(out).toHaveLength(24);
  });

  it('greedy: the same tokens with several exits, every rule, backbone and adapted prefix, one or several exits', () => {
    const backbone = pathsOf(trainer.exits, 'backbone');
    expect(backbone.map((p) => [p.start, p.layer])).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    const adapted = pathsOf(trainer.exits, 'adapted');
    const sets: ExitPath[][] = [
      backbone,
      adapted,
      [backbone[3]],
      [backbone[1], backbone[3]],
      [...adapted].reverse(),
      [backbone[2], adapted[1]],
    ];
    sets.forEach((paths, k) => {
      for (const rule of VOTING_RULES) same(model, paths, prompt(12 + k, 10 + k), { maxNewTokens: 16, rule });
    });
    const weighted = backbone.map((p, k) => ({ ...p, weight: [0.1, 0.2, 0.3, 0.4][k] }));
    same(model, weighted, prompt(9, 30), { maxNewTokens: 16, rule: 'weighted' });
  });

  it('honours stop tokens and maxNewTokens', () => {
    const ids = prompt(10, 2);
    const full = same(model, [plainPath(model)], ids, { maxNewTokens: 12, rule: 'mean' });
    const stop = full[5];
    const cut = same(model, [plainPath(model)], ids, { maxNewTokens: 12, rule: 'mean', stopIds: [stop] });
    expect(cut).toEqual(full.slice(0, full.indexOf(stop)));
    expect(generate(model, [plainPath(model)], ids, { maxNewTokens: 0, rule: 'mean' })).toEqual([]);
    expect(generate(model, [plainPath(model)], ids, { maxNewTokens: 1, rule: 'mean' })).toEqual(full.slice(0, 1));
    expect(() => generate(model, [plainPath(model)], [], { maxNewTokens: 4, rule: 'mean' })).toThrow(/empty prompt/);
  });

  it('sampling: the same seeded tokens as the rerun', () => {
    const o: GenerateOptions = { maxNewTokens: 20, rule: 'confidence', temperature: 0.8, seed: 5 };
    const paths = pathsOf(trainer.exits, 'backbone');
    const a = same(model, paths, prompt(8, 3), o);
    expect(generate(model, paths, prompt(8, 3), o)).toEqual(a);
    expect(generate(model, paths, prompt(8, 3), { ...o, seed: 6 })).not.toEqual(a);
  });

  it('maxContext: drops old tokens like the rerun (positions restart), also for a prompt longer than it', () => {
    same(model, pathsOf(trainer.exits, 'backbone'), prompt(8, 4), { maxNewTokens: 14, rule: 'max', maxContext: 12 });
    same(model, [plainPath(model)], prompt(20, 5), { maxNewTokens: 6, rule: 'max', maxContext: 12 });
  });

  it('Mistral sliding window: attends to the last W keys only, as the masked rerun', () => {
    const windowed = new LlamaModel({ ...model.config, slidingWindow: 5 }, model.namedWeights());
    const paths = pathsOf(trainer.exits, 'backbone');
    const a = same(windowed, paths, prompt(14, 6), { maxNewTokens: 16, rule: 'mean' });
    const b = same(windowed, [plainPath(windowed)], prompt(3, 7), { maxNewTokens: 16, rule: 'max' });
    // the window changes the continuation (else this test would not see it)
    expect(generate(model, [plainPath(model)], prompt(3, 7), { maxNewTokens: 16, rule: 'max' })).not.toEqual(b);
    expect(a).toHaveLength(16);
  });

  it('frees every cached tensor when generation ends', () => {
    const paths = pathsOf(trainer.exits, 'backbone');
    const before = tf.memory().numTensors;
    generate(model, paths, prompt(11, 8), { maxNewTokens: 9, rule: 'confidence' });
    generate(model, paths, prompt(9, 9), { maxNewTokens: 6, rule: 'max', maxContext: 10 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('generate with a KV cache on the PyTorch-referenced fixture', () => {
  it('greedy: the same tokens as the rerun with its PEFT adapter', () => {
    const m = LlamaModel.load(FIXTURE_DIR);
    try {
      const ids = prompt(16, 11, m.config.vocabSize);
      const base = same(m, [plainPath(m)], ids, { maxNewTokens: 20, rule: 'max' });
      applyPeftAdapter(m, join(FIXTURE_DIR, 'lora'));
      const adapted = same(m, [plainPath(m)], ids, { maxNewTokens: 20, rule: 'max' });
      expect(adapted).not.toEqual(base);
      same(m, [plainPath(m)], ids, { maxNewTokens: 20, rule: 'max', maxContext: 24 });
      const windowed = new LlamaModel({ ...m.config, slidingWindow: 6 }, m.namedWeights());
      const w = same(windowed, [plainPath(windowed)], ids, { maxNewTokens: 20, rule: 'max' });
      expect(w).not.toEqual(base); // the window (base weights, no adapter) changes the continuation
    } finally {
      m.dispose();
    }
  });

  it('greedy: the same tokens on Qwen2 (q/k/v biases) and llama3 rope scaling, with their adapters', () => {
    for (const name of ['qwen2-bias', 'llama3-rope-scaled']) {
      const fixture = join(REPO_ROOT, 'tests', 'fixtures', name);
      const m = LlamaModel.load(fixture);
      try {
        const ids = prompt(16, 12, m.config.vocabSize);
        same(m, [plainPath(m)], ids, { maxNewTokens: 20, rule: 'max' });
        applyPeftAdapter(m, join(fixture, 'lora'));
        same(m, [plainPath(m)], ids, { maxNewTokens: 20, rule: 'max' });
      } finally {
        m.dispose();
      }
    }
  });
});
