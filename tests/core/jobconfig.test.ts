// The job vocabulary: resolving a create request's method and hyperparameters, and the clear refusals.
import { describe, it, expect } from 'vitest';
import {
  AUTO_EVALUATIONS,
  isEdgeLlmMethod,
  isRagMethod,
  JobConfigError,
  MAX_TIME_BUDGET_S,
  METHOD_TYPES,
  RAG_DEFAULTS,
  resolveJobConfig,
  tuneModeOf,
  type JobConfigInput,
} from '../../packages/core/src/service/jobconfig.js';

const model = { numLayers: 4, hiddenSize: 32, maxPositionEmbeddings: 512 };
// 40 records, batch 8: 5 steps per epoch
const resolve = (input: JobConfigInput, val: number | null = 10) => resolveJobConfig(input, model, 40, val);

/** The JobConfigError `input` raises, as {code, param, message}. */
function refusal(input: JobConfigInput, val: number | null = 10) {
  try {
    resolve(input, val);
  } catch (e) {
    expect(e).toBeInstanceOf(JobConfigError);
    const { code, param, message } = e as JobConfigError;
    return { code, param, message };
  }
  throw new Error(`resolved: ${JSON.stringify(input)}`);
}

describe('method', () => {
  it('maps each method type to the engine mode, and says which parts apply', () => {
    expect(METHOD_TYPES.map(tuneModeOf)).toEqual(['edge_llm', 'vanilla', 'none', 'edge_llm', 'vanilla']);
    expect(METHOD_TYPES.filter(isEdgeLlmMethod)).toEqual(['edge_llm', 'rag_edge_llm']);
    expect(METHOD_TYPES.filter(isRagMethod)).toEqual(['rag', 'rag_edge_llm', 'rag_lora']);
  });

  it('defaults to edge_llm, and old requests resolve as before', () => {
    const c = resolve({ hyperparameters: { n_epochs: 2 } });
    expect(c.method).toEqual({
      type: 'edge_llm',
      edge_llm: {
        exit_layers: [0, 1, 2, 3],
        schedule: 'sequential',
        train_heads: true,
        head_rank: 0,
        prefix: 'backbone',
        voting: 'auto',
        compression: null,
      },
    });
    expect(c.totalSteps).toBe(10);
    expect(c.hyperparameters).toMatchObject({ time_budget_s: null, early_stopping: null, eval_steps: null });
  });

  it('resolves lora without Edge-LLM parts (one window: fewer steps than exits is fine)', () => {
    const c = resolve({ method: { type: 'lora' }, hyperparameters: { max_steps: 2 } });
    expect(c.method).toEqual({ type: 'lora' });
    expect(c.totalSteps).toBe(2);
    expect(refusal({ method: { type: 'edge_llm' }, hyperparameters: { max_steps: 2 } }).param).toBe('hyperparameters.max_steps');
  });

  it('resolves the rag types with their retrieval defaults and the edge_llm part where it applies', () => {
    expect(resolve({ method: { type: 'rag_lora' } }).method).toEqual({ type: 'rag_lora', rag: { ...RAG_DEFAULTS } });
    const c = resolve({ method: { type: 'rag_edge_llm', rag: { k: 4 }, edge_llm: { exit_layers: [1, 3] } } });
    expect(c.method).toMatchObject({ type: 'rag_edge_llm', rag: { k: 4, context_share: 0.6 }, edge_llm: { exit_layers: [1, 3] } });
  });

  it('resolves rag with no training: hyperparameters echoed, 0 steps, no in-loop evaluation', () => {
    const c = resolve({
      method: { type: 'rag', rag: { k: 3, context_share: 0.5 } },
      hyperparameters: { n_epochs: 3, max_length: 128, early_stopping: { patience: 2 }, time_budget_s: 60 },
    });
    expect(c.method).toEqual({ type: 'rag', rag: { k: 3, context_share: 0.5 } });
    expect(c.totalSteps).toBe(0);
    expect(c.hyperparameters).toMatchObject({
      n_epochs: 3,
      max_length: 128,
      warmup_steps: 0,
      time_budget_s: 60,
      early_stopping: { patience: 2, min_delta: 0 },
      eval_steps: null,
    });
  });

  it('refuses method parts the method does not take, naming the part', () => {
    for (const type of ['lora', 'rag', 'rag_lora'] as const) {
      expect(refusal({ method: { type, edge_llm: { schedule: 'random' } } })).toMatchObject({
        code: 'invalid_method',
        param: 'method.edge_llm',
      });
      const c = refusal({ method: { type, edge_llm: { compression: { target_sparsity: 0.5, avg_bits: 4 } } } });
      expect(c).toMatchObject({ code: 'invalid_method', param: 'method.edge_llm.compression' });
      expect(c.message).toMatch(new RegExp(`method ${type} cannot compress.*use edge_llm or rag_edge_llm`));
    }
    expect(refusal({ method: { type: 'lora', rag: { k: 2 } } })).toMatchObject({ code: 'invalid_method', param: 'method.rag' });
    expect(refusal({ method: { type: 'edge_llm', rag: {} } }).param).toBe('method.rag');
    expect(refusal({ method: { type: 'rag', rag: { k: 17 } } })).toMatchObject({ code: 'invalid_method', param: 'method.rag.k' });
    expect(refusal({ method: { type: 'rag', rag: { context_share: 1 } } }).param).toBe('method.rag.context_share');
  });
});

describe('time budget, early stopping, eval_steps', () => {
  it('resolves eval_steps "auto" only when early stopping or a budget meets validation data', () => {
    const hp = (h: JobConfigInput['hyperparameters'], val: number | null = 10) =>
      resolve({ method: { type: 'lora' }, hyperparameters: { max_steps: 200, ...h } }, val).hyperparameters;
    expect(hp({}).eval_steps).toBeNull();
    expect(hp({ early_stopping: { patience: 3 } })).toMatchObject({
      early_stopping: { patience: 3, min_delta: 0 },
      eval_steps: 200 / AUTO_EVALUATIONS,
    });
    expect(hp({ time_budget_s: 30 })).toMatchObject({ time_budget_s: 30, eval_steps: 10 });
    expect(hp({ time_budget_s: 30 }, null)).toMatchObject({ time_budget_s: 30, eval_steps: null });
    expect(hp({ eval_steps: 7 }).eval_steps).toBe(7);
    expect(resolve({ method: { type: 'lora' }, hyperparameters: { max_steps: 5, time_budget_s: 1 } }).hyperparameters.eval_steps).toBe(1);
  });

  it('refuses early stopping and eval_steps without validation data, and bad values, naming the field', () => {
    const es = refusal({ hyperparameters: { early_stopping: { patience: 2, min_delta: 0.01 } } }, null);
    expect(es).toMatchObject({ code: 'validation_file_required', param: 'hyperparameters.early_stopping' });
    expect(es.message).toMatch(/validation_file/);
    expect(refusal({ hyperparameters: { eval_steps: 5 } }, null)).toMatchObject({
      code: 'validation_file_required',
      param: 'hyperparameters.eval_steps',
    });
    expect(refusal({ hyperparameters: { early_stopping: { patience: 0 } } }).param).toBe('hyperparameters.early_stopping.patience');
    expect(refusal({ hyperparameters: { early_stopping: { patience: 1, min_delta: -1 } } }).param).toBe(
      'hyperparameters.early_stopping.min_delta',
    );
    expect(refusal({ hyperparameters: { eval_steps: 0 } }).param).toBe('hyperparameters.eval_steps');
    const tb = refusal({ hyperparameters: { time_budget_s: MAX_TIME_BUDGET_S + 1 } });
    expect(tb).toMatchObject({ code: 'invalid_hyperparameters', param: 'hyperparameters.time_budget_s' });
    expect(tb.message).toMatch(/7 days/);
    expect(refusal({ hyperparameters: { time_budget_s: 0 } }).param).toBe('hyperparameters.time_budget_s');
  });
});
