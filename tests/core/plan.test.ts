// Plans of resolved jobs on the service side: the method's planner mode, no training for rag, time budgets.
import { describe, it, expect } from 'vitest';
import { planInputOf, planJob, withTimeBudget } from '../../packages/core/src/service/plan.js';
import { resolveJobConfig, type JobConfigInput } from '../../packages/core/src/service/jobconfig.js';

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
const limits = { numLayers: 8, hiddenSize: 192, maxPositionEmbeddings: 512 };
const config = { deviceMemoryBytes: 8 * 2 ** 30, deviceThreads: 2, deviceGflops: 100 };
const planOf = (input: JobConfigInput) => {
  const cfg = resolveJobConfig({ seed: 1, ...input }, limits, 400, 40);
  return { cfg, plan: planJob(shape, cfg, 400, config, null) };
};

describe('planJob', () => {
  it("plans lora as one window over every layer (the planner's vanilla mode)", () => {
    const { cfg, plan } = planOf({ method: { type: 'rag_lora' }, hyperparameters: { max_steps: 40 } });
    expect(planInputOf(shape, cfg, 400, null).mode).toBe('vanilla');
    expect(plan).toMatchObject({ fits: true, exit_layers: [7], window_depth: 8, prefix_cache: false, time_budget: null });
    const edge = planOf({ hyperparameters: { max_steps: 40 } }).plan;
    expect(edge.exit_layers).toEqual([1, 3, 5, 7]);
    expect(plan.forecast.activation_bytes).toBeGreaterThan(edge.forecast.activation_bytes);
  });

  it('plans rag as inference only: 0 steps, no trainable state, less memory than training', () => {
    const { cfg, plan } = planOf({ method: { type: 'rag' }, hyperparameters: { max_steps: 40 } });
    expect(cfg.totalSteps).toBe(0);
    expect(planInputOf(shape, cfg, 400, null)).toMatchObject({ mode: 'none', steps: 0 });
    const lora = planOf({ method: { type: 'lora' }, hyperparameters: { max_steps: 40 } }).plan;
    expect(plan).toMatchObject({ fits: true, exit_layers: [7] });
    expect(plan.forecast).toMatchObject({ trainable_bytes: 0, total_ms: 0 });
    expect(plan.forecast.weight_bytes).toBe(lora.forecast.weight_bytes);
    expect(plan.forecast.peak_tf_bytes).toBeLessThan(lora.forecast.peak_tf_bytes);
    expect(plan.forecast.step_ms).toBeGreaterThan(0);
    expect(plan.forecast.step_ms).toBeLessThan(lora.forecast.step_ms);
  });

  it('bounds the forecast by the time budget: the steps that fit, and whether it stops the run', () => {
    const free = planOf({ method: { type: 'lora' }, hyperparameters: { max_steps: 40 } }).plan;
    const budgetS = (free.forecast.step_ms * 10.5) / 1000;
    const { plan } = planOf({ method: { type: 'lora' }, hyperparameters: { max_steps: 40, time_budget_s: budgetS } });
    expect(plan.time_budget).toEqual({ seconds: budgetS, steps: 10, stops_run: true });
    expect(plan.forecast.total_ms).toBe(Math.round(budgetS * 1000));
    const roomy = withTimeBudget(free, 3600 * 24, 40);
    expect(roomy.time_budget).toEqual({ seconds: 86400, steps: 40, stops_run: false });
    expect(roomy.forecast.total_ms).toBe(free.forecast.total_ms);
  });
});
