// A BF16 model of a real family (Qwen2.5's tokenizer and vocabulary, tied head, q/k/v biases), shrunk to a
// few small layers, tuned end to end with its weights kept stored outside the TF.js heap: Edge-LLM with
// low-rank exit heads over the stored lm_head and 4-bit LUC, the saved bundle and PEFT adapter reproduce
// the trained paths, and a plan that cannot fit is refused before the weights are read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../../packages/engine/src/synth/index.js';
import { runTuning, PlanNotFeasibleError } from '../../packages/engine/src/tune/run.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadEdgeAdapter } from '../../packages/engine/src/tune/artifacts.js';
import { applyPeftAdapter } from '../../packages/engine/src/model/lora.js';
import { exitProbabilities } from '../../packages/engine/src/infer/voting.js';
import { generate } from '../../packages/engine/src/infer/generate.js';
import { isTensor } from '../../packages/engine/src/backend/frozen.js';
import { useTestBackend } from './helpers.js';

describe('tuning a 16-bit model kept outside the heap', () => {
  let dir: string, modelDir: string, train: string;
  beforeAll(async () => {
    await useTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'edgetune-stored-tune-'));
    modelDir = join(dir, 'model');
    synthModel({
      like: 'qwen2.5-0.5b',
      outDir: modelDir,
      seed: 3,
      overrides: { numHiddenLayers: 4, hiddenSize: 64, intermediateSize: 96, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16 },
    });
    train = join(dir, 'train.jsonl');
    const lines = Array.from({ length: 24 }, (_, i) => JSON.stringify({ prompt: `Is ${i} even?`, completion: i % 2 ? ' no' : ' yes' }));
    writeFileSync(train, `${lines.join('\n')}\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads stored: the BF16 matrices stay outside the heap', () => {
    const before = tf.memory().numBytes;
    const m = LlamaModel.load(modelDir);
    expect(isTensor(m.embedTokens)).toBe(false);
    expect(m.lmHead).toBe(m.embedTokens); // tied
    expect(m.layers[0].linears.q_proj.stored?.dtype).toBe('BF16');
    expect(m.layers[0].linears.q_proj.bias).toBeDefined(); // qwen2
    expect(tf.memory().numBytes - before).toBeLessThan(m.storedBytes() / 20);
    m.dispose();
  });

  it('Edge-LLM + 4-bit LUC with low-rank heads: the bundle and the PEFT adapter reproduce the trained paths', async () => {
    const out = join(dir, 'out');
    const report = await runTuning({
      modelDir,
      trainFile: train,
      outDir: out,
      maxLength: 32,
      compression: {
        targetSparsity: 0,
        avgBits: 4,
        sparsityRule: 'uniform',
        bitsRule: 'uniform',
        calibrationSequences: 2,
        calibrationTokens: 16,
      },
      tune: { steps: 4, microBatch: 4, lr: 5e-3, exitLayers: [1, 3], headRank: 4, lora: { r: 4, alpha: 8 } },
    });
    expect(report.steps).toBe(4);
    expect(Number.isFinite(report.finalLoss)).toBe(true);
    // packed layers, the embedding (= tied head) still BF16 outside the heap
    expect(report.storedWeightBytes).toBeGreaterThan(0);
    expect(report.compression?.report.storedBytes).toBeLessThan(report.compression!.report.denseBytes / 6);
    const manifest = JSON.parse(readFileSync(join(out, 'edge_llm.json'), 'utf8'));
    expect(manifest.head_lora).toEqual({ r: 4, scale: 2 });

    const voted = LlamaModel.load(modelDir);
    const { paths } = loadEdgeAdapter(voted, out);
    expect(paths.map((p) => p.layer)).toEqual([1, 3]);
    expect(paths[1].head).toBe(voted.lmHead); // the stored head, shared
    expect(paths[1].headLora?.A.shape).toEqual([4, 64]);
    // the trained low-rank head moved away from lm_head
    expect(tf.tidy(() => tf.max(tf.abs(paths[1].headLora!.B)).dataSync()[0])).toBeGreaterThan(0);
    expect(voted.layers[2].linears.up_proj.packed?.bits).toBe(4);
    const ids = [
      [1, 40, 41, 42, 43, 44],
      [1, 50, 51, 52, 53, 54],
    ];
    const rows = Int32Array.from({ length: 12 }, (_, i) => i);
    const probs = exitProbabilities(voted, paths, ids, rows);
    // PEFT: LoRA on the deepest path's window and its merged head as modules_to_save; the packed base as
    // the bundle ships it (compressed_model.safetensors) so that both see the same frozen weights.
    const peft = LlamaModel.load(modelDir);
    loadEdgeAdapter(peft, out); // packed weights + LoRA of the bundle
    applyPeftAdapter(peft, join(out, 'peft'));
    const viaPeft = tf.tidy(() => tf.softmax(tf.reshape(peft.forward(ids, { lora: (l) => l >= paths[1].start }).logits, [12, -1])));
    const deepest = probs[1].dataSync(),
      pv = viaPeft.dataSync();
    let err = 0;
    for (let i = 0; i < deepest.length; i++) err = Math.max(err, Math.abs(deepest[i] - pv[i]));
    expect(err).toBeLessThan(1e-5);
    // generation with the KV cache votes over both low-rank paths
    const gen = generate(voted, paths, [1, 40, 41], { maxNewTokens: 3, rule: 'mean' });
    const rerun = generate(voted, paths, [1, 40, 41], { maxNewTokens: 3, rule: 'mean', kvCache: false });
    expect(gen).toEqual(rerun);
    tf.dispose([...probs, viaPeft]);
    voted.dispose();
    peft.dispose();
  });

  it('a budget the model cannot fit is refused with the figures before the weights are read', async () => {
    const err = await runTuning({
      modelDir,
      trainFile: train,
      outDir: join(dir, 'refused'),
      maxLength: 32,
      device: { memoryBudgetBytes: 2 ** 20, matmulGflops: 10, stepTimeFactor: 1 },
      tune: { steps: 2, microBatch: 4 },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(PlanNotFeasibleError);
    expect(String(err.message)).toMatch(/needs about \d+ MiB.*has 1 MiB/);
  });
});
