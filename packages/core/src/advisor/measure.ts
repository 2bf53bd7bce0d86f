/**
 * The advisor's `measure` mode, shared by the service (probe jobs) and the engine's CLI (probes in one
 * process): which candidates run as probes, on what share of the time budget, and how a finished probe's
 * validation metric is read and ranked.
 */
import { defaultExitLayers } from '../exits.js';
import { ADVISOR_EARLY_STOPPING, type Candidate, type CandidateJob } from './recommend.js';

/** Probes a `measure` recommendation runs: the top estimate candidates, sharing the time budget equally. */
export const MEASURE_PROBES = 3;

/** A probe's measured validation metric: accuracy (higher is better) or loss (lower is better). */
export interface MeasuredMetric {
  metric: 'accuracy' | 'loss';
  value: number;
}

/**
 * The hyperparameters a probe adds to its candidate's job: `time_budget_s` = its share (seconds); for a method
 * that trains, early stopping ({@link ADVISOR_EARLY_STOPPING}), `eval_steps: "auto"` and `max_steps` = the
 * candidate's steps cut to what the share allows at the forecast step time, at least one step per exit window
 * (the `auto` exit layers of a `numLayers`-layer model), which an edge method's job needs.
 */
export function probeHyperparameters(c: Candidate, shareS: number, numLayers: number): Partial<CandidateJob['hyperparameters']> {
  if (c.method === 'rag') return { time_budget_s: shareS };
  const windows = c.job.method.edge_llm ? defaultExitLayers(numLayers).length : 1;
  const steps = Math.max(windows, Math.min(c.steps, Math.floor((shareS * 1000) / c.forecast.step_ms)));
  return { time_budget_s: shareS, max_steps: steps, early_stopping: { ...ADVISOR_EARLY_STOPPING }, eval_steps: 'auto' };
}

/**
 * The validation metric of a finished probe from its job's `result` (the worker's shape): the vote's accuracy;
 * without a vote (method `rag` trains nothing and evaluates one path) that path's accuracy, else its loss;
 * else the best point of its validation curve (max accuracy, min loss). Null when nothing was measured.
 */
export function measuredOf(result: unknown): MeasuredMetric | null {
  const r = result as {
    voted_accuracy?: number | null;
    voting_rule?: string | null;
    exits?: { accuracy: number | null; loss: number }[];
    validation_curve?: { metric: 'accuracy' | 'loss'; value: number }[];
  } | null;
  if (typeof r?.voted_accuracy === 'number') return { metric: 'accuracy', value: r.voted_accuracy };
  const path = !r?.voting_rule && r?.exits?.length === 1 ? r.exits[0] : null;
  if (path) return typeof path.accuracy === 'number' ? { metric: 'accuracy', value: path.accuracy } : { metric: 'loss', value: path.loss };
  const curve = r?.validation_curve ?? [];
  if (!curve.length) return null;
  const metric = curve[0].metric;
  const values = curve.map((p) => p.value);
  return { metric, value: metric === 'accuracy' ? Math.max(...values) : Math.min(...values) };
}

/** Orders measured probes best first: accuracy before loss, then higher accuracy / lower loss (an Array.sort comparator). */
export function compareMeasured(a: MeasuredMetric, b: MeasuredMetric): number {
  if (a.metric !== b.metric) return a.metric === 'accuracy' ? -1 : 1;
  return a.metric === 'accuracy' ? b.value - a.value : a.value - b.value;
}
