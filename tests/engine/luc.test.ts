// LUC end to end on a tiny model: sensitivity profiling, policy, layer-sequential compression with
// packed weights, and tuning on the compressed model.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
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
import { createTinyModel } from '../helpers/tiny-model.js';

let dir: string;
let report: SensitivityReport;
const rng = new Rng(9);
const calib = { ids: Array.from({ length: 4 }, () => Array.from({ length: 24 }, () => 4 + rng.int(300))), description: 'random ids (test)' };

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
      let zeros = 0, n = 0;
      for (const lin of Object.values(L.linears)) {
        expect(lin.packed?.bits).toBe(policy.bits[l]);
        const w = dequantizeWeight(lin.packed!);
        for (const x of w) { if (x === 0) zeros++; n++; }
      }
      expect(zeros / n).toBeGreaterThanOrEqual(policy.sparsity[l] - 1 / 32); // per-row floor on 32 columns
    });
    const after = model.forward(calib.ids).logits;
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(before, after))).dataSync()[0]);
    expect(diff).toBeGreaterThan(0);
    expect(Number.isFinite(diff)).toBe(true);
    // Adaptive layer tuning runs on the compressed model and changes only LoRA/heads.
    const examples = calib.ids.map((ids) => ({ inputIds: ids, labels: ids.map((x, t) => (t > 16 ? x : -100)) }));
    const t = new AdaptiveTrainer(model, examples, { ...DEFAULT_TUNE, steps: 4, microBatch: 2, schedule: 'round_robin', lora: { ...DEFAULT_LORA, r: 2, alpha: 4 } }, 3);
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
