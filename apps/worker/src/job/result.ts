/** The engine's report as the job's `result`, and the success events that summarise it. */
import type { TuneJobReport, ValidationPoint } from '@edgetune/engine';
import type { JobPlan } from '@edgetune/core';
import type { NewJobEvent } from '@edgetune/store';

/** An in-loop validation point as the job shows it (`result.validation_curve`, `metrics` events): elapsed time in seconds. */
export function validationPointOf(p: ValidationPoint): Record<string, unknown> {
  return {
    step: p.step,
    elapsed_s: Math.round(p.elapsedMs) / 1000,
    metric: p.metric,
    value: p.value,
    accuracy: p.accuracy,
    loss: p.loss,
  };
}

/**
 * Validation metrics and run totals as the job's `result` (`compression`: null, see {@link compressionResultOf}),
 * with the validation curve, the step whose weights were kept (`best_step`, null without in-loop evaluation)
 * and what ended training (`stopped_by`).
 */
export function resultOf(r: TuneJobReport): Record<string, unknown> {
  const v = r.validation;
  return {
    voting_rule: r.votingRule,
    voted_accuracy: v && r.votingRule ? (v.voted[r.votingRule]?.accuracy ?? null) : null,
    exits: v ? v.perExit.map((e) => ({ layer: e.layer, accuracy: e.accuracy, loss: e.loss, perplexity: e.perplexity })) : [],
    voted: v ? v.voted : {},
    validation_examples: r.validationExamples,
    train_examples: r.trainExamples,
    steps: r.steps,
    tokens: r.tokens,
    tokens_per_sec: Math.round(r.tokensPerSec * 10) / 10,
    train_seconds: Math.round(r.trainMs) / 1000,
    final_loss: Number.isFinite(r.finalLoss) ? r.finalLoss : null,
    validation_curve: r.validationCurve.map(validationPointOf),
    best_step: r.bestStep,
    stopped_by: r.stoppedBy,
    compression: null,
  };
}

/** `result.compression` of a compressed run (null for a dense one): its policy, sizes in bytes, mean sparsity and bits. */
export function compressionResultOf(r: TuneJobReport, policy: { id: string; reused: boolean } | null): Record<string, unknown> | null {
  const c = r.compression;
  if (!c) return null;
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  return {
    policy_id: policy?.id ?? null,
    policy_reused: policy?.reused ?? false,
    stored_bytes: c.report.storedBytes,
    dense_bytes: c.report.denseBytes,
    mean_sparsity: Math.round(mean(c.policy.sparsity) * 1e6) / 1e6,
    mean_bits: Math.round(mean(c.policy.bits) * 1e6) / 1e6,
  };
}

/** The events of a succeeded job: its plan's forecast against what was measured (when measured), its validation, its status. */
export function successEvents(plan: JobPlan | null, result: Record<string, unknown>): NewJobEvent[] {
  const acc = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  return [
    ...(plan?.measured
      ? [
          {
            message:
              `Plan forecast vs measured: peak RSS ${mib(plan.forecast.peak_rss_bytes)} vs ${mib(plan.measured.peak_rss_bytes)}, TF.js peak ${mib(plan.forecast.peak_tf_bytes)} vs ${mib(plan.measured.peak_tf_bytes)}, ` +
              `step ${Math.round(plan.forecast.step_ms)} vs ${Math.round(plan.measured.step_ms)} ms`,
            data: { plan },
          },
        ]
      : []),
    ...(result.stopped_by === 'early_stopping' || result.stopped_by === 'time_budget'
      ? [
          {
            message: `Training stopped by ${result.stopped_by === 'early_stopping' ? 'early stopping' : 'the time budget'} after ${result.steps} steps; kept the weights of step ${result.best_step ?? result.steps}`,
            data: { stopped_by: result.stopped_by, steps: result.steps, best_step: result.best_step },
          },
        ]
      : []),
    {
      type: 'metrics',
      message: `Validation: ${(result.exits as { layer: number; accuracy: number | null }[]).map((e) => `exit ${e.layer} ${acc(e.accuracy)}`).join(', ')}; voted (${result.voting_rule ?? 'n/a'}) ${acc(result.voted_accuracy as number | null)}`,
      data: { validation: result },
    },
    { type: 'status', message: 'Job succeeded', data: { status: 'succeeded' } },
  ];
}
