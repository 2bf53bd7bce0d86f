// A plan as a person reads it (`edgetune-engine plan`): memory against the budget, time, exits, storage
// runs, and why it does not fit.
import { describe, it, expect } from 'vitest';
import { formatPlan, jobPlanOf, withTimeBudget } from '../../packages/core/src/service/plan.js';
import { plan } from '../../packages/core/src/schedule/planner.js';

const shape = {
  vocabSize: 4096,
  hiddenSize: 192,
  intermediateSize: 512,
  numHiddenLayers: 8,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 48,
  tieWordEmbeddings: true,
};
const input = {
  model: shape,
  mode: 'edge_llm' as const,
  loraR: 8,
  headRank: 0,
  schedule: 'sequential' as const,
  prefix: 'backbone' as const,
  batchSize: 8,
  seqLen: 256,
  steps: 200,
  trainExamples: 1000,
  policy: { bits: [8, 8, 8, 4, 4, 4, 4, 16], sparsity: new Array(8).fill(0) },
};
const device = (mib: number) => ({ memoryBudgetBytes: mib * 2 ** 20, threads: 2, backend: 'wasm', matmulGflops: 50 });
const mib = (b: number) => Math.ceil(b / 2 ** 20);

describe('formatPlan', () => {
  it('states the forecast against the budget, the time, the exits and the storage as runs of layers', () => {
    const p = withTimeBudget(jobPlanOf(plan(input, device(4096)), 'worker'), 3600, 200);
    const text = formatPlan(p);
    expect(text.split('\n')[0]).toBe('fits:    yes');
    expect(text).toContain(`peak RSS ${mib(p.forecast.peak_rss_bytes)} MiB of a 4096 MiB budget`);
    expect(text).toContain(`TF.js tensors ${mib(p.forecast.peak_tf_bytes)} MiB`);
    expect(text).toContain(`${p.forecast.step_ms.toFixed(0)} ms/step`);
    expect(text).toContain('(within the 3600 s time budget)');
    expect(text).toContain(`exits:   layers ${p.exit_layers.join(', ')}; deepest window ${p.window_depth} layers`);
    expect(text).toContain('storage: layers 0-2 int8, 3-6 int4, 7 f32');
  });

  it("says that it does not fit and the planner's reason first", () => {
    const p = jobPlanOf(plan(input, device(64)), 'worker');
    expect(p.fits).toBe(false);
    const first = formatPlan(p).split('\n')[0];
    expect(first).toBe(`fits:    NO: ${p.reason}`);
    expect(first).toMatch(/has 64 MiB \(the memory budget\)/);
  });
});
