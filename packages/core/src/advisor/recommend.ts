/**
 * The advisor: "what should I run on this box for this data?". Every candidate (model x LUC compression x
 * method x LoRA rank) is planned for the device (memory and time forecast, planner.ts), given the steps at
 * which validation peaked on the bench (capped by the time budget), and scored with the headroom its method
 * closed on the bench at this training-set size (rules.ts). Guidelines after Qin et al., arXiv 2406.03777.
 */
import { classificationLabels, recordAnswer, type TrainingRecord } from '../jsonl.js';
import { plan as makePlan, plannerStoredDtype, type DeviceProfile, type ModelShape, type Plan } from '../schedule/planner.js';
import { estimatedPolicy } from '../service/plan.js';
import {
  COMPRESSIBLE_METHODS,
  ADVISOR_METHODS,
  gainAt,
  peakStepAt,
  type AdvisorMethod,
  type AdvisorRules,
  type GainRule,
  type RowRef,
  type RuleTaskKind,
} from './rules.js';

/** What the advisor needs of the training data. */
export interface TrainingDataSummary {
  n_train: number;
  /** classification: at most 32 distinct answers (classificationLabels) */
  task_kind: 'classification' | 'generation';
  /** the distinct answers (classification), else null */
  labels: string[] | null;
  /** share of the most common answer (classification), else null */
  majority_share: number | null;
}

/**
 * Summarizes training records for the advisor.
 * @throws RangeError for no records
 */
export function summarizeTrainingData(records: readonly TrainingRecord[]): TrainingDataSummary {
  if (!records.length) throw new RangeError('summarizeTrainingData: no records');
  const labels = classificationLabels(records);
  if (!labels) return { n_train: records.length, task_kind: 'generation', labels: null, majority_share: null };
  const counts = new Map<string, number>();
  for (const r of records) counts.set(recordAnswer(r), (counts.get(recordAnswer(r)) ?? 0) + 1);
  return { n_train: records.length, task_kind: 'classification', labels, majority_share: Math.max(...counts.values()) / records.length };
}

/** A base model the advisor may propose. */
export interface AdvisorModel {
  id: string;
  shape: ModelShape;
  /** the safetensors dtype of its stored weights (null: F32) */
  storedDtype: string | null;
  maxPositionEmbeddings: number;
}

/** One candidate to plan: what would run, for how many optimizer steps (0: no training, method `rag`). */
export interface CandidateSpec {
  model: AdvisorModel;
  method: AdvisorMethod;
  compression: { avg_bits: number; target_sparsity: number } | null;
  /** null: no LoRA (method `rag`) */
  lora_r: number | null;
  steps: number;
}

/** Plans a candidate for the device (the planner's memory and time forecast). */
export type AdvisorPlanFn = (spec: CandidateSpec) => Plan;

/** The job's defaults the advisor plans with (resolveJobConfig's): batch min(8, n), max_length min(256, context). */
const defaultBatch = (n: number) => Math.max(1, Math.min(ADVISOR_TUNING.batch_size, n));
const defaultMaxLength = (m: AdvisorModel) => Math.min(256, m.maxPositionEmbeddings);

/**
 * The planner's plan of a candidate with the job defaults (batch size, max_length, LUC's default bit rule
 * through estimatedPolicy), as POST /v1/jobs plans it. Method `rag` trains nothing: it is planned as one
 * rank-1 LoRA step, an upper bound of its memory. Edge types plan as `edge_llm`, lora types as `vanilla`.
 */
export function planCandidate(spec: CandidateSpec, device: DeviceProfile, nTrain: number): Plan {
  const L = spec.model.shape.numHiddenLayers;
  const c = spec.compression;
  const edge = (COMPRESSIBLE_METHODS as readonly string[]).includes(spec.method);
  return makePlan(
    {
      model: spec.model.shape,
      storedDtype: plannerStoredDtype(spec.model.storedDtype),
      mode: edge ? 'edge_llm' : 'vanilla',
      loraR: spec.lora_r ?? 1,
      ...(edge
        ? {
            headRank: ADVISOR_TUNING.edge_llm.head_rank,
            prefix: ADVISOR_TUNING.edge_llm.prefix,
            schedule: ADVISOR_TUNING.edge_llm.schedule,
          }
        : {}),
      batchSize: defaultBatch(nTrain),
      seqLen: defaultMaxLength(spec.model),
      steps: Math.max(1, spec.steps),
      trainExamples: nTrain,
      policy: c
        ? estimatedPolicy(L, {
            ...c,
            method: 'wanda',
            ...ADVISOR_TUNING.compression,
            group_size: 0,
          })
        : null,
    },
    device,
  );
}

/** Inputs of {@link recommend}. */
export interface AdvisorInput {
  data: TrainingDataSummary;
  /** a validation file exists: candidates train with early stopping */
  hasValidation: boolean;
  /** wall time the tuning may take, seconds */
  timeBudgetS: number;
  /** candidate base models (default: every model the service lists) */
  models: AdvisorModel[];
}

/** A guideline a candidate follows, with the bench rows behind it. */
export interface GuidelineCitation {
  /** 1: RAG vs parameter learning by difficulty; 2: steps where validation peaked; 3: compressed larger model; 4: small LoRA rank */
  guideline: 1 | 2 | 3 | 4;
  says: string;
  rows: RowRef[];
}

/** What POST /v1/jobs needs to run a candidate (with the training and validation files). */
export interface CandidateJob {
  model: string;
  method: {
    type: AdvisorMethod;
    edge_llm?: {
      exit_layers: 'auto';
      schedule: 'round_robin';
      head_rank: number;
      prefix: 'adapted';
      compression?: { avg_bits: number; target_sparsity: number; sparsity_rule: 'uniform'; bits_rule: 'uniform' };
    };
  };
  hyperparameters: {
    max_steps?: number;
    lora_r?: number;
    batch_size?: number;
    learning_rate?: number;
    time_budget_s: number;
    early_stopping?: { patience: number; min_delta: number };
    eval_steps?: 'auto';
  };
}

/** A ranked candidate. */
export interface Candidate {
  model: string;
  method: AdvisorMethod;
  compression: { avg_bits: number; target_sparsity: number } | null;
  lora_r: number | null;
  /** optimizer steps (0: `rag`, no training) */
  steps: number;
  expected: {
    metric: 'accuracy' | 'exact_match';
    /** baseline + g x (1 - baseline) */
    value: number;
    baseline: number;
    /** headroom closed on the bench at this n_train, and its spread */
    gain: number;
    gain_sd: number;
    /** the task kind of the bench rows read (`any`: pooled, the data's kind was not measured alone) */
    task_kind: RuleTaskKind;
    /** n_train lies outside the sizes the bench measured: the nearest one was read */
    outside_measured: boolean;
  };
  forecast: { peak_rss_bytes: number; step_ms: number; total_s: number; memory_budget_bytes: number };
  job: CandidateJob;
  guidelines: GuidelineCitation[];
  /** every bench row the numbers rest on */
  rows: RowRef[];
}

/** A candidate left out, and why. */
export interface LeftOutCandidate {
  model: string;
  method: AdvisorMethod;
  /** target_sparsity absent: no bench rows say which sparsity goes with the bits */
  compression: { avg_bits: number; target_sparsity?: number } | null;
  lora_r: number | null;
  /** does_not_fit: the planner's reason; over_time_budget: even the fewest useful steps overrun; no_bench_rows: nothing measured */
  code: 'does_not_fit' | 'over_time_budget' | 'no_bench_rows';
  reason: string;
}

/** The advisor's answer. */
export interface Recommendation {
  data: TrainingDataSummary;
  rules_source: string;
  /** best first: expected metric, then forecast time */
  candidates: Candidate[];
  left_out: LeftOutCandidate[];
}

/**
 * The tuning settings the guidelines bench measures with and every candidate's job carries, so that what is
 * recommended is what was measured: batch, peak learning rate, Edge-LLM's window schedule, exit-head rank and
 * prefix, and LUC's uniform rules (the bench compresses every layer to the same bits, without pruning).
 */
export const ADVISOR_TUNING = {
  batch_size: 8,
  learning_rate: 2e-3,
  edge_llm: { schedule: 'round_robin', head_rank: 16, prefix: 'adapted' },
  compression: { sparsity_rule: 'uniform', bits_rule: 'uniform' },
} as const;

/** Bit-widths offered for the edge methods besides dense weights (LUC, guideline 3). */
export const ADVISOR_COMPRESSION_BITS = [8, 4] as const;

/** Early stopping of a candidate with a validation file: evaluations without improvement before it stops. */
export const ADVISOR_EARLY_STOPPING = { patience: 3, min_delta: 0 } as const;

const usesLora = (m: AdvisorMethod) => m !== 'rag';
const isRag = (m: AdvisorMethod) => m.startsWith('rag');
const describe = (m: string, method: string, c: { avg_bits: number } | null, r: number | null) =>
  `${m} ${method}${c ? ` ${c.avg_bits}-bit` : ''}${r ? ` r=${r}` : ''}`;

/**
 * The gain rules of a model, method and bit-width (null: dense), one per measured LUC budget, each for the
 * data's task kind where the bench measured it, else pooled over kinds.
 */
function gainRulesOf(rules: AdvisorRules, model: string, method: AdvisorMethod, bits: number | null, kind: string): GainRule[] {
  const match = rules.gains.filter(
    (g) => g.model === model && g.method === method && (bits === null ? g.compression === null : g.compression?.avg_bits === bits),
  );
  const budgets = [...new Set(match.map((g) => g.compression?.target_sparsity ?? null))];
  return budgets.flatMap((sp) => {
    const same = match.filter((g) => (g.compression?.target_sparsity ?? null) === sp);
    const rule = same.find((g) => g.task_kind === kind) ?? same.find((g) => g.task_kind === 'any');
    return rule ? [rule] : [];
  });
}

/**
 * Ranks what to run: every base model x compression (dense; 8 and 4 bits for edge methods) x method x LoRA
 * rank (the ranks the bench's rank study measured, else the rank the gains were measured at). Each candidate:
 * - expected metric = baseline + g x (1 - baseline), g read off the bench's gain curve at n_train (baseline:
 *   the majority-class share for classification, 0 for generation, whose zero-shot metric is not known here);
 * - steps = where validation peaked on the bench at this n_train (guideline 2; else the steps the gain was
 *   measured with), capped by the time budget through the forecast step time;
 * - left out with the planner's reason when it does not fit the device, when even the fewest useful steps
 *   (the earliest measured peak, at least one per exit window) overrun the time budget, or when the bench
 *   measured nothing for it (no invented numbers).
 * Ranked by expected metric, ties by forecast time.
 */
export function recommend(input: AdvisorInput, rules: AdvisorRules, planFn: AdvisorPlanFn): Recommendation {
  const { data } = input;
  const baseline = data.task_kind === 'classification' ? (data.majority_share ?? 0) : 0;
  const metric = data.task_kind === 'classification' ? 'accuracy' : 'exact_match';
  const candidates: Candidate[] = [];
  const left_out: LeftOutCandidate[] = [];
  for (const model of input.models) {
    for (const method of ADVISOR_METHODS) {
      const bitsOptions: (number | null)[] = COMPRESSIBLE_METHODS.includes(method) ? [null, ...ADVISOR_COMPRESSION_BITS] : [null];
      for (const bits of bitsOptions) {
        const found = gainRulesOf(rules, model.id, method, bits, data.task_kind);
        if (!found.length) {
          left_out.push({
            model: model.id,
            method,
            compression: bits === null ? null : { avg_bits: bits },
            lora_r: null,
            code: 'no_bench_rows',
            reason: `the guidelines bench measured no ${describe(model.id, method, bits === null ? null : { avg_bits: bits }, null)} runs (no numbers to rank it by)`,
          });
          continue;
        }
        for (const rule of found)
          for (const r of ranksOf(rules, rule, model)) {
            const out = candidate(input, rules, model, rule, r, baseline, metric, planFn);
            if ('code' in out) left_out.push(out);
            else candidates.push(out);
          }
      }
    }
  }
  candidates.sort((a, b) => b.expected.value - a.expected.value || a.forecast.total_s - b.forecast.total_s);
  return { data, rules_source: rules.source, candidates, left_out };
}

/** LoRA ranks to try: those of the rank study when it measured the gain curve's rank too, else the curve's. */
function ranksOf(rules: AdvisorRules, rule: GainRule, model: AdvisorModel): (number | null)[] {
  if (!usesLora(rule.method)) return [null];
  const study = rules.lora_rank.find((x) => x.model === rule.model && x.method === rule.method);
  const maxRank = Math.min(256, model.shape.hiddenSize);
  if (!study?.ranks.some((x) => x.lora_r === rule.lora_r)) return [rule.lora_r];
  return study.ranks.map((x) => x.lora_r).filter((r) => r <= maxRank);
}

function candidate(
  input: AdvisorInput,
  rules: AdvisorRules,
  model: AdvisorModel,
  rule: GainRule,
  r: number | null,
  baseline: number,
  metric: Candidate['expected']['metric'],
  planFn: AdvisorPlanFn,
): Candidate | LeftOutCandidate {
  const n = input.data.n_train;
  const { method, compression } = rule;
  const leftOut = (code: LeftOutCandidate['code'], reason: string): LeftOutCandidate => ({
    model: model.id,
    method,
    compression,
    lora_r: r,
    code,
    reason,
  });
  const gain = gainAt(rule, n);
  const guidelines: GuidelineCitation[] = [];
  let g = gain.value;
  // guideline 4: the rank study's gain at this rank relative to the curve's rank
  const study = r === null ? undefined : rules.lora_rank.find((x) => x.model === rule.model && x.method === method);
  if (study && r !== null) {
    const at = study.ranks.find((x) => x.lora_r === r)!;
    const ref = study.ranks.find((x) => x.lora_r === rule.lora_r)!;
    g += at.mean - ref.mean;
    guidelines.push({
      guideline: 4,
      says: `LoRA rank ${r} closed ${fmt(at.mean)} of the headroom on the bench (best rank ${study.best_r}); smaller ranks suit constrained devices`,
      rows: at.rows,
    });
  }
  // guideline 2: train to where validation peaked (else as long as the gain was measured with)
  let targetSteps = 0,
    minSteps = 0;
  if (usesLora(method)) {
    const peak = rules.peak_steps.find((p) => p.method === method) ?? rules.peak_steps.find((p) => p.method === 'any');
    if (peak?.points.length) {
      const at = peakStepAt(peak, n);
      targetSteps = at.value;
      minSteps = Math.max(1, Math.min(...peak.points.map((p) => p.best_step)));
      guidelines.push({
        guideline: 2,
        says: `validation peaked near step ${at.value} at ${n} examples on the bench: longer tuning does not necessarily help`,
        rows: at.rows,
      });
    } else {
      targetSteps = Math.max(1, Math.round(nearestPoint(rule, n).max_steps));
      minSteps = 1;
    }
  }
  if (isRag(method))
    guidelines.push({
      guideline: 1,
      says: `RAG closed ${fmt(gain.value)} of the headroom at ${n} examples on the bench: harder tasks favour RAG with the strongest model that fits`,
      rows: gain.rows,
    });
  if (compression)
    guidelines.push({
      guideline: 3,
      says: `${compression.avg_bits}-bit LUC closed ${fmt(gain.value)} of the headroom on the bench: a compressed larger model may beat a smaller dense one`,
      rows: gain.rows,
    });
  const spec: CandidateSpec = { model, method, compression, lora_r: r, steps: Math.max(1, targetSteps) };
  const first = planFn(spec);
  if (!first.fits) return leftOut('does_not_fit', first.reason ?? 'does not fit the device');
  let steps = targetSteps;
  if (usesLora(method)) {
    const budgetSteps = Math.floor((input.timeBudgetS * 1000) / first.forecast.stepMs);
    // the job needs at least one step per exit window
    const fewest = Math.max(minSteps, method.endsWith('edge_llm') ? first.exitLayers.length : 1);
    if (budgetSteps < fewest)
      return leftOut(
        'over_time_budget',
        `the fewest useful steps (${fewest}) take about ${Math.ceil((fewest * first.forecast.stepMs) / 1000)} s, over the time budget of ${input.timeBudgetS} s`,
      );
    steps = Math.max(fewest, Math.min(targetSteps, budgetSteps));
  }
  const final = steps === spec.steps ? first : planFn({ ...spec, steps });
  if (!final.fits) return leftOut('does_not_fit', final.reason ?? 'does not fit the device');
  const value = Math.min(1, Math.max(0, baseline + g * (1 - baseline)));
  const rows = dedupe([gain.rows, ...guidelines.map((x) => x.rows)].flat());
  return {
    model: model.id,
    method,
    compression,
    lora_r: r,
    steps,
    expected: {
      metric,
      value: Math.round(value * 1e4) / 1e4,
      baseline: Math.round(baseline * 1e4) / 1e4,
      gain: Math.round(g * 1e4) / 1e4,
      gain_sd: gain.sd,
      task_kind: rule.task_kind,
      outside_measured: gain.outside,
    },
    forecast: {
      peak_rss_bytes: final.forecast.peakRssBytes,
      step_ms: Math.round(final.forecast.stepMs * 100) / 100,
      total_s: usesLora(method) ? Math.round(final.forecast.stepMs * steps) / 1000 : 0,
      memory_budget_bytes: final.device.memoryBudgetBytes,
    },
    job: {
      model: model.id,
      method: {
        type: method,
        ...(method.endsWith('edge_llm')
          ? {
              edge_llm: {
                exit_layers: 'auto' as const,
                ...ADVISOR_TUNING.edge_llm,
                ...(compression ? { compression: { ...compression, ...ADVISOR_TUNING.compression } } : {}),
              },
            }
          : {}),
      },
      hyperparameters: {
        ...(usesLora(method)
          ? { max_steps: steps, lora_r: r as number, batch_size: ADVISOR_TUNING.batch_size, learning_rate: ADVISOR_TUNING.learning_rate }
          : {}),
        time_budget_s: input.timeBudgetS,
        ...(input.hasValidation && usesLora(method) ? { early_stopping: { ...ADVISOR_EARLY_STOPPING }, eval_steps: 'auto' as const } : {}),
      },
    },
    guidelines,
    rows,
  };
}

function nearestPoint(rule: GainRule, n: number) {
  return rule.points.reduce((b, p) =>
    Math.abs(Math.log2(p.n_train) - Math.log2(n)) < Math.abs(Math.log2(b.n_train) - Math.log2(n)) ? p : b,
  );
}

const fmt = (g: number) => `${Math.round(g * 100)}%`;

function dedupe(rows: RowRef[]): RowRef[] {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = `${r.study}|${r.task}|${r.n_train}|${r.seed}|${r.model}|${r.method}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
