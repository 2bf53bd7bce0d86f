// The trainer stops a diverged run: a non-finite loss (lora_alpha past float32), or weights an update made
// non-finite (a huge learning rate with clipping off), throws TrainingDivergedError at that step; a sane run
// never does. The non-finite gradients are never applied.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { DEFAULT_LORA } from '../../packages/engine/src/model/lora.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import type { Example } from '../../packages/engine/src/tune/batches.js';
import { loadExamples } from '../../packages/engine/src/tune/run.js';
import { AdaptiveTrainer, DEFAULT_TUNE, TrainingDivergedError, type TuneOptions } from '../../packages/engine/src/tune/trainer.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';

let dir: string;
let modelDir: string;
let examples: Example[];
let padId: number;

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-diverge-'));
  modelDir = join(dir, 'model');
  createTinyModel(modelDir, { layers: 2 });
  writeToyTask(join(dir, 'train.jsonl'), 16, 1);
  const tok = await loadTokenizer(modelDir);
  padId = tok.padId!;
  examples = (await loadExamples(join(dir, 'train.jsonl'), tok, 48)).examples;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Steps a fresh trainer with `o` until it throws or finishes; the error (null: none) and the steps done. */
async function train(o: Partial<TuneOptions>): Promise<{ error: unknown; steps: number; finite: boolean }> {
  const model = LlamaModel.load(modelDir);
  const opts: TuneOptions = {
    ...DEFAULT_TUNE,
    lora: { ...DEFAULT_LORA, r: 4, alpha: 8, dropout: 0 },
    steps: 6,
    microBatch: 4,
    warmupSteps: 0,
    lr: 5e-3,
    ...o,
  };
  const t = new AdaptiveTrainer(model, examples, opts, padId);
  let error: unknown = null;
  try {
    while (t.state.step < opts.steps) await t.step();
  } catch (e) {
    error = e;
  }
  const steps = t.state.step;
  const finite = [...t.namedVariables().values()].every((v) => v.dataSync().every(Number.isFinite));
  t.optimizer.dispose();
  model.dispose();
  return { error, steps, finite };
}

describe('divergence', () => {
  it('a sane run trains every step', async () => {
    const r = await train({});
    expect(r).toEqual({ error: null, steps: 6, finite: true });
  });

  it('lora_alpha past float32: the loss is not finite at step 1, and nothing is applied', async () => {
    const r = await train({ lora: { ...DEFAULT_LORA, r: 4, alpha: 1e308, dropout: 0 } });
    expect(r.error).toBeInstanceOf(TrainingDivergedError);
    expect(r.error).toMatchObject({ name: 'TrainingDivergedError', step: 1, quantity: 'loss' });
    expect((r.error as Error).message).toMatch(/^training diverged at step 1: the loss is NaN/);
    expect(r.steps).toBe(0);
    expect(r.finite).toBe(true);
  });

  it('a learning rate past float32 with clipping off: stopped at the update that made the weights non-finite', async () => {
    const r = await train({ lr: 1e39, maxGradNorm: 0, mode: 'vanilla' });
    expect(r.error).toMatchObject({ name: 'TrainingDivergedError', step: 1, quantity: 'weights' });
    expect(Number.isFinite((r.error as TrainingDivergedError).value)).toBe(false);
    // the step is not counted (a checkpoint never holds it); the weights it broke are why the run stops
    expect(r.steps).toBe(0);
    expect(r.finite).toBe(false);
  });
});
