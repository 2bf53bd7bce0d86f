// LUC end to end on a tiny model: sensitivity profiling, policy, layer-sequential compression with
// packed weights, and tuning on the compressed model.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { profileSensitivity, buildPolicy, compressModel, type SensitivityReport } from '../../packages/engine/src/compress/luc.js';
import { dequantizeWeight } from '../../packages/engine/src/compress/quantize.js';
import { AdaptiveTrainer, DEFAULT_TUNE } from '../../packages/engine/src/tune/trainer.js';
import { DEFAULT_LORA } from '../../packages/engine/src/model/lora.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { runTuning } from '../../packages/engine/src/tune/run.js';
import { loadEdgeAdapter } from '../../packages/engine/src/tune/artifacts.js';
import { evaluatePaths } from '../../packages/engine/src/infer/evaluate.js';
import { loadExamples } from '../../packages/engine/src/tune/run.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';

let dir: string;
let report: SensitivityReport;
const rng = new Rng(9);
const calib = {
  ids: Array.from({ length: 4 }, () => Array.from({ length: 24 }, () => 4 + rng.int(300))),
  description: 'random ids (test)',
};

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-luc-'));
  createTinyModel(join(dir, 'model'), { layers: 4, hiddenSize: 32, intermediateSize: 64 });
  const model = LlamaModel.load(join(dir, 'model'));
  report = profileSensitivity(model, calib, { sparsities: [0.1, 0.5, 0.9], bits: [2, 4, 8] });
  model.dispose();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LUC', () => {
  it('profiles every layer: error grows with sparsity and shrinks with bits', () => {
    expect(report.layers).toHaveLength(4);
    expect(report.calibration).toMatchObject({ description: 'random ids (test)', sequences: 4, seqLen: 24 });
    for (const l of report.layers) {
      expect(l.pruneNmse[2]).toBeGreaterThan(l.pruneNmse[0]);
      expect(l.quantNmse[0]).toBeGreaterThan(l.quantNmse[2]);
      expect(l.pruneNmse.every((x) => x >= 0 && Number.isFinite(x))).toBe(true);
      expect(l.pruneDloss.every(Number.isFinite)).toBe(true);
    }
  });

  it('builds a budgeted policy and compresses to it, weights stored packed', () => {
    const policy = buildPolicy(report, { targetSparsity: 0.5, avgBits: 6, bitsRule: 'budgeted' });
    expect(policy.sparsity.reduce((a, b) => a + b, 0) / 4).toBeCloseTo(0.5, 6);
    expect(policy.bits.reduce((a, b) => a + b, 0) / 4).toBeLessThanOrEqual(6);
    const model = LlamaModel.load(join(dir, 'model'));
    const before = model.forward(calib.ids).logits;
    const r = compressModel(model, calib, policy);
    expect(r.storedBytes).toBeLessThan(r.denseBytes / 2.5);
    model.layers.forEach((L, l) => {
      let zeros = 0,
        n = 0;
      for (const lin of Object.values(L.linears)) {
        expect(lin.packed?.bits).toBe(policy.bits[l]);
        const w = dequantizeWeight(lin.packed!);
        for (const x of w) {
          if (x === 0) zeros++;
          n++;
        }
      }
      expect(zeros / n).toBeGreaterThanOrEqual(policy.sparsity[l] - 1 / 32); // per-row floor on 32 columns
    });
    const after = model.forward(calib.ids).logits;
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(before, after))).dataSync()[0]);
    expect(diff).toBeGreaterThan(0);
    expect(Number.isFinite(diff)).toBe(true);
    // Adaptive layer tuning runs on the compressed model and changes only LoRA/heads.
    const examples = calib.ids.map((ids) => ({ inputIds: ids, labels: ids.map((x, t) => (t > 16 ? x : -100)) }));
    const t = new AdaptiveTrainer(
      model,
      examples,
      { ...DEFAULT_TUNE, steps: 4, microBatch: 2, schedule: 'round_robin', lora: { ...DEFAULT_LORA, r: 2, alpha: 4 } },
      3,
    );
    const packedBefore = model.layers[1].linears.q_proj.packed!.data.slice();
    return (async () => {
      for (let i = 0; i < 4; i++) expect(Number.isFinite((await t.step()).loss)).toBe(true);
      expect([...model.layers[1].linears.q_proj.packed!.data]).toEqual([...packedBefore]);
      tf.dispose([before, after]);
      t.optimizer.dispose();
      model.dispose();
    })();
  });
});

describe('LUC in a tuning job', () => {
  it('profiles, compresses, tunes, and ships the packed model so the bundle evaluates the same', async () => {
    writeToyTask(join(dir, 'train.jsonl'), 40, 1);
    writeToyTask(join(dir, 'val.jsonl'), 16, 2);
    const out = join(dir, 'run');
    let seen: unknown = null;
    const r = await runTuning({
      modelDir: join(dir, 'model'),
      trainFile: join(dir, 'train.jsonl'),
      validationFile: join(dir, 'val.jsonl'),
      outDir: out,
      maxLength: 48,
      tune: { steps: 4, microBatch: 4, lora: { r: 2, alpha: 4 } },
      compression: {
        targetSparsity: 0.5,
        avgBits: 6,
        activationBits: 8,
        calibrationSequences: 4,
        calibrationTokens: 32,
        onPolicy: (p) => {
          seen = p;
        },
      },
    });
    expect(r.compression?.policy.sparsity).toHaveLength(4);
    expect(seen).toEqual(r.compression?.policy);
    expect(r.compression!.report.storedBytes).toBeLessThan(r.compression!.report.denseBytes / 2.5);
    const model = LlamaModel.load(join(dir, 'model'));
    const { paths, manifest } = loadEdgeAdapter(model, out);
    expect((manifest.compression as { policy: { bits: number[] } }).policy.bits).toEqual(r.compression!.policy.bits);
    expect(model.layers[0].linears.q_proj.packed?.bits).toBe(r.compression!.policy.bits[0]);
    expect(model.layers[0].linears.q_proj.actBits).toBe(8); // activation fake-quant travels with the bundle
    const tok = await loadTokenizer(join(dir, 'model'));
    const { examples } = await loadExamples(join(dir, 'val.jsonl'), tok, 48);
    const ev = evaluatePaths(model, paths, examples, { padId: tok.padId! });
    expect(ev.voted.mean.loss).toBeCloseTo(r.validation!.voted.mean.loss, 5);
    model.dispose();
  });
});
