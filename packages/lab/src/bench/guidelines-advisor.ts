/**
 * The advisor checked, not believed: on a task its rules were not fitted on, for every training-set size and seed
 * the bench measured, the candidate each mode picks against the best candidate measured (regret in points of
 * the test metric), next to always choosing the default Edge-LLM setup.
 *
 * - `estimate`: the highest-ranked candidate of `recommend` (rules fitted on the other tasks) that the bench
 *   measured on this task;
 * - `measure`: the top `probes` measured candidates of the estimate, each probed for an equal share of the time
 *   budget and ranked by validation metric. A probe is the measured run itself cut at its share of the budget
 *   (the same seed, data, settings and learning-rate schedule: a probe's steps are the run's first steps), so its
 *   score is the best validation point within the share; `rag` trains nothing and scores its validation metric;
 * - `default`: Edge-LLM on the smaller model, dense, LoRA rank 8.
 */
import { readFileSync } from 'node:fs';
import {
  planCandidate,
  recommend,
  summarizeTrainingData,
  type AdvisorModel,
  type AdvisorRules,
  type Candidate,
  type DeviceProfile,
  type GuidelinesRun,
  type TrainingRecord,
} from '@edgetune/core';

/** One check: a task, a training-set size and a seed. Metrics in [0, 1], regrets in points (x 100). */
export interface AdvisorCheck {
  task: string;
  n_train: number;
  seed: number;
  /** candidates measured on this task at this size and seed */
  measured: number;
  best: { candidate: string; test_metric: number };
  estimate: { candidate: string; test_metric: number; regret_points: number; rank_of_pick: number };
  measure: { candidate: string; test_metric: number; regret_points: number; probes: string[] };
  default: { candidate: string; test_metric: number; regret_points: number } | null;
}

/** Inputs of {@link checkAdvisor}. */
export interface AdvisorCheckOptions {
  task: string;
  /** the training subset a (n_train, seed) row was tuned on */
  trainFileOf: (n: number, seed: number) => string;
  models: AdvisorModel[];
  device: DeviceProfile;
  /** seconds the user affords: the estimate's steps cap, and the probes' total */
  timeBudgetS: number;
  /** probe jobs of `measure` */
  probes: number;
  defaultModel: string;
}

/** The key a candidate and a bench row share: model, method, bits, rank. */
export function candidateKey(c: {
  model: string;
  method: string;
  compression: { avg_bits: number } | null;
  lora_r: number | null;
}): string {
  return `${c.model} ${c.method}${c.compression ? ` ${c.compression.avg_bits}-bit` : ''}${c.method === 'rag' ? '' : ` r=${c.lora_r}`}`;
}

/** Probe score of a measured run after `seconds` of tuning: higher is better (loss is negated). */
function probeScore(r: GuidelinesRun, seconds: number): number {
  const sign = r.task_kind === 'generation' ? -1 : 1; // generation curves hold the loss
  if (r.method === 'rag' || !r.validation_curve.length) return sign * (r.validation_value ?? (sign > 0 ? 0 : Number.POSITIVE_INFINITY));
  const within = r.validation_curve.filter((p) => p.elapsed_s <= seconds);
  const points = within.length ? within : r.validation_curve.slice(0, 1);
  return Math.max(...points.map((p) => sign * p.value));
}

/**
 * Checks the advisor on every (n_train, seed) of `o.task` in `rows`.
 * @param rules fitted WITHOUT `o.task`'s rows
 */
export function checkAdvisor(rows: GuidelinesRun[], rules: AdvisorRules, o: AdvisorCheckOptions): AdvisorCheck[] {
  const onTask = rows.filter((r) => r.task === o.task);
  const groups = new Map<string, GuidelinesRun[]>();
  for (const r of onTask) groups.set(`${r.n_train}|${r.seed}`, [...(groups.get(`${r.n_train}|${r.seed}`) ?? []), r]);
  const out: AdvisorCheck[] = [];
  for (const [, rs] of [...groups].sort((a, b) => a[0].localeCompare(b[0], 'en', { numeric: true }))) {
    const { n_train: n, seed } = rs[0];
    const byKey = new Map(rs.map((r) => [candidateKey(r), r]));
    const records = readFileSync(o.trainFileOf(n, seed), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as TrainingRecord);
    const data = summarizeTrainingData(records);
    const rec = recommend({ data, hasValidation: true, timeBudgetS: o.timeBudgetS, models: o.models }, rules, (spec) =>
      planCandidate(spec, o.device, data.n_train),
    );
    const ranked = rec.candidates.map((c: Candidate) => candidateKey(c)).filter((k) => byKey.has(k));
    if (!ranked.length) continue;
    const best = rs.reduce((a, b) => (b.test_metric > a.test_metric ? b : a));
    const pts = (r: GuidelinesRun) => Math.round(100 * (best.test_metric - r.test_metric) * 100) / 100;
    const pick = byKey.get(ranked[0])!;
    const probes = ranked.slice(0, o.probes);
    const share = o.timeBudgetS / Math.max(1, probes.length);
    const measured = byKey.get(probes.reduce((a, b) => (probeScore(byKey.get(b)!, share) > probeScore(byKey.get(a)!, share) ? b : a)))!;
    const def = rs.find((r) => r.model === o.defaultModel && r.method === 'edge_llm' && !r.compression && r.lora_r === 8) ?? null;
    out.push({
      task: o.task,
      n_train: n,
      seed,
      measured: rs.length,
      best: { candidate: candidateKey(best), test_metric: best.test_metric },
      estimate: {
        candidate: candidateKey(pick),
        test_metric: pick.test_metric,
        regret_points: pts(pick),
        rank_of_pick: rec.candidates.findIndex((c) => candidateKey(c) === ranked[0]),
      },
      measure: { candidate: candidateKey(measured), test_metric: measured.test_metric, regret_points: pts(measured), probes },
      default: def ? { candidate: candidateKey(def), test_metric: def.test_metric, regret_points: pts(def) } : null,
    });
  }
  return out;
}
