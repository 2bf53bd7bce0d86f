// Synthetic guidelines-bench rows for advisor tests: each method closes a fixed fraction of the headroom over a
// 0.5 baseline at 8 and 32 training examples, with validation peaking at the given steps.
import type { GuidelinesRun } from '@edgetune/core';

/**
 * Rows of one task and model. `gains`: headroom closed per method; `peaks`: best step at 8 and at 32 examples
 * (rag has none: it does not train).
 */
export function syntheticRows(o: {
  model: string;
  task: string;
  gains: Partial<Record<GuidelinesRun['method'], number>>;
  peaks: [number, number];
  modelParams?: number;
  maxSteps?: number;
}): GuidelinesRun[] {
  const base = {
    study: 'methods' as const,
    task: o.task,
    task_kind: 'classification' as const,
    classes: 2,
    model: o.model,
    model_params: o.modelParams ?? 30_000,
    compression: null,
    stored_weight_bytes: 4 * (o.modelParams ?? 30_000),
    seed: 0,
    lora_r: 4,
    max_steps: o.maxSteps ?? 20,
    steps_run: o.maxSteps ?? 20,
    metric: 'accuracy' as const,
    baseline: 0.5,
    validation_curve: [],
    tune_s: 1,
    peak_rss_bytes: 3e8,
  };
  return (Object.entries(o.gains) as [GuidelinesRun['method'], number][]).flatMap(([method, gain]) =>
    [8, 32].map((n_train, i) => ({
      ...base,
      method,
      n_train,
      best_step: method === 'rag' ? null : o.peaks[i],
      test_metric: 0.5 + gain * 0.5,
    })),
  );
}
