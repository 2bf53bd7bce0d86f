// A job's resolved configuration as the engine's runTuning options: method -> tune.mode, retrieval, stopping.
import { describe, it, expect } from 'vitest';
import { engineRunOptions, engineTuneOptions } from '../../apps/worker/src/engine-options.js';
import { resolveJobConfig, type Hyperparameters, type JobConfigInput } from '../../packages/core/src/service/jobconfig.js';

const model = { numLayers: 4, hiddenSize: 32, maxPositionEmbeddings: 512 };
const options = (input: JobConfigInput) => {
  const c = resolveJobConfig({ seed: 5, ...input }, model, 40, 10);
  return { tune: engineTuneOptions(c.method, c.hyperparameters, c.seed, c.totalSteps), run: engineRunOptions(c.method, c.hyperparameters) };
};

describe('engine options', () => {
  it('maps each method to the engine mode, with exits only for the edge_llm types and rag options for the rag types', () => {
    const edge = options({ method: { type: 'edge_llm', edge_llm: { schedule: 'round_robin', head_rank: 4 } } });
    expect(edge.tune).toMatchObject({ mode: 'edge_llm', exitLayers: [0, 1, 2, 3], schedule: 'round_robin', headRank: 4, steps: 5 });
    expect(edge.run).toEqual({});
    const lora = options({ method: { type: 'lora' } });
    expect(lora.tune).toMatchObject({ mode: 'vanilla', steps: 5, lora: { r: 8, alpha: 16 } });
    expect(lora.tune).not.toHaveProperty('exitLayers');
    expect(options({ method: { type: 'rag' } })).toMatchObject({
      tune: { mode: 'none', steps: 0 },
      run: { rag: { k: 2, contextShare: 0.6 } },
    });
    expect(options({ method: { type: 'rag_edge_llm', rag: { k: 4, context_share: 0.3 } } })).toMatchObject({
      tune: { mode: 'edge_llm', exitLayers: [0, 1, 2, 3] },
      run: { rag: { k: 4, contextShare: 0.3 } },
    });
    expect(options({ method: { type: 'rag_lora' } }).tune.mode).toBe('vanilla');
  });

  it('passes the time budget in ms, early stopping and the resolved eval_steps', () => {
    const { run } = options({
      method: { type: 'lora' },
      hyperparameters: { max_steps: 40, time_budget_s: 90, early_stopping: { patience: 3, min_delta: 0.01 } },
    });
    expect(run).toEqual({ timeBudgetMs: 90_000, earlyStopping: { patience: 3, minDelta: 0.01 }, evalEvery: 2 });
  });

  it('reads jobs stored before the stopping fields existed as none of them', () => {
    const c = resolveJobConfig({ seed: 5 }, model, 40, 10);
    const { time_budget_s, early_stopping, eval_steps, ...old } = c.hyperparameters;
    expect(engineRunOptions(c.method, old as Hyperparameters)).toEqual({});
  });
});
