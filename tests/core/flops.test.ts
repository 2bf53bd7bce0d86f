// The analytic matmul FLOP count shared by the trainer (GFLOP/s) and the planner (time forecast).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { layerForwardFlops, layerTrainFlops } from '../../packages/core/src/flops.js';
import { costFeatures, type PlanInput } from '../../packages/core/src/schedule/planner.js';
import { AdaptiveTrainer, DEFAULT_TUNE } from '../../packages/engine/src/tune/trainer.js';
import { DEFAULT_LORA } from '../../packages/engine/src/model/lora.js';
import type { Batch, Example } from '../../packages/engine/src/tune/batches.js';
import { createTinyModel } from '../helpers/tiny-model.js';

let dir: string;
beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-flops-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('layerForwardFlops', () => {
  it('counts 2 M N K per product: GQA k/v widths, only the targeted LoRA linears, both attention products', () => {
    // d 8, ffn 16, 2 query heads and 1 key/value head of 4: q [8 -> 8], k, v [8 -> 4], o [8 -> 8], gate, up [8 -> 16], down [16 -> 8]
    const f = layerForwardFlops({ hiddenSize: 8, intermediateSize: 16, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 4 }, 2, 3, 2, [
      'q_proj',
      'v_proj',
      'lm_head',
    ]);
    const N = 2 * 3;
    expect(f.base).toBe(2 * N * (64 + 32 + 32 + 64 + 3 * 128));
    expect(f.att).toBe(2 * (2 * 2 * 2 * 3 * 3 * 4)); // QK^T and PV, each 2 x batch 2 x heads 2 x 3 x 3 x 4
    expect(f.lora).toBe(2 * N * 2 * (8 + 8 + (8 + 4)));
    expect(layerTrainFlops(f)).toBe(2 * f.base + 3 * f.att + 3 * f.lora);
    expect(
      layerForwardFlops({ hiddenSize: 8, intermediateSize: 16, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 4 }, 2, 3, 0, ['q_proj'])
        .lora,
    ).toBe(0);
  });
});

describe('trainer and planner count the same work', () => {
  it("the planner's FLOPs per micro-step are the trainer's, averaged over the windows (backbone prefix, no cache)", () => {
    const modelDir = join(dir, 'm');
    const config = createTinyModel(modelDir, { layers: 4, hiddenSize: 32, intermediateSize: 64 });
    const mb = 3,
      T = 10;
    // one labelled position per example, as the planner assumes for classification-style data
    const examples: Example[] = Array.from({ length: 6 }, (_, i) => ({
      inputIds: Array.from({ length: T }, (_, t) => 5 + ((i + t) % 50)),
      labels: Array.from({ length: T }, (_, t) => (t === T - 1 ? 7 : -100)),
    }));
    const batch: Batch = {
      ids: examples.slice(0, mb).map((e) => e.inputIds),
      labels: examples.slice(0, mb).map((e) => e.labels),
      mask: examples.slice(0, mb).map(() => new Array(T).fill(1)),
      tokens: mb * T,
    };
    const targets = ['q_proj', 'k_proj', 'v_proj', 'down_proj'];
    for (const mode of ['edge_llm', 'vanilla'] as const) {
      const model = LlamaModel.load(modelDir);
      const t = new AdaptiveTrainer(
        model,
        examples,
        {
          ...DEFAULT_TUNE,
          mode,
          schedule: 'round_robin',
          prefix: 'backbone',
          microBatch: mb,
          exitLayers: mode === 'edge_llm' ? [1, 3] : undefined,
          lora: { ...DEFAULT_LORA, r: 4, targetModules: targets },
        },
        0,
      );
      const K = mode === 'edge_llm' ? 2 : 1;
      let trainer = 0;
      for (let k = 0; k < K; k++) trainer += t.matmulFlopsOf(k, batch) / K;
      t.optimizer.dispose();
      model.dispose();
      const inp: PlanInput = {
        model: config,
        mode,
        loraR: 4,
        loraTargets: targets,
        batchSize: mb,
        seqLen: T,
        steps: 10,
        trainExamples: 6,
        prefix: 'backbone',
        schedule: 'round_robin',
        prefixCache: false,
      };
      const planner = costFeatures(inp, mode === 'edge_llm' ? [1, 3] : [3], mb, false).trainFlops;
      expect(planner, mode).toBeCloseTo(trainer, 0);
    }
  });
});
