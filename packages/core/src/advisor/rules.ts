/**
 * The advisor's rules: small, explainable models fitted to the guidelines bench's rows (`npm run bench --
 * --guidelines`), after Qin et al., "Empirical Guidelines for Deploying LLMs onto Resource-constrained Edge
 * Devices" (arXiv 2406.03777): how much of the headroom above the baseline each method closes as the
 * training set grows (§4, guidelines 1 and 3), when validation peaks (guideline 2) and which LoRA rank did
 * best (guideline 4). Every number keeps the rows it rests on, so a recommendation can cite them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Tuning methods of the service (`method.type`) the bench measures. */
export const ADVISOR_METHODS = ['rag', 'lora', 'edge_llm', 'rag_edge_llm', 'rag_lora'] as const;
export type AdvisorMethod = (typeof ADVISOR_METHODS)[number];

/** Methods that accept LUC compression (`method.edge_llm.compression`). */
export const COMPRESSIBLE_METHODS: readonly AdvisorMethod[] = ['edge_llm', 'rag_edge_llm'];

/** One run of the guidelines bench: a method on a model and a task at one training-set size and seed. */
export interface GuidelinesRun {
  study: 'methods' | 'compressed_vs_smaller' | 'lora_rank' | 'time';
  task: string;
  task_kind: 'classification' | 'generation';
  /** distinct answers of a classification task; null for generation */
  classes: number | null;
  /** base model id (a folder name under models/) */
  model: string;
  model_params: number;
  /** the LUC budget the model was compressed with; null: dense */
  compression: { avg_bits: number; target_sparsity: number } | null;
  /** bytes of the frozen weights as stored (packed when compressed) */
  stored_weight_bytes: number;
  method: AdvisorMethod;
  n_train: number;
  seed: number;
  lora_r: number;
  max_steps: number;
  /** the run's wall-time budget, s, when the bench gave every run equal time (`max_steps` is then a cap); absent: equal steps */
  time_budget_s?: number;
  /** optimizer step of the best validation value (null: no in-loop evaluation) */
  best_step: number | null;
  steps_run: number;
  metric: 'accuracy' | 'exact_match';
  /** test metric in [0, 1] */
  test_metric: number;
  /** majority-class accuracy or zero-shot metric on the same test split, [0, 1] */
  baseline: number;
  validation_curve: { step: number; elapsed_s: number; value: number }[];
  /**
   * the validation metric of the weights the run kept (voted accuracy; voted loss, nats per token, for generation):
   * what a probe of the advisor's `measure` mode ranks by; absent on rows measured before it was recorded
   */
  validation_value?: number;
  /** tuning wall time, seconds */
  tune_s: number;
  peak_rss_bytes: number;
}

/** A bench row a rule rests on ("bench result X"). */
export interface RowRef {
  study: GuidelinesRun['study'];
  task: string;
  n_train: number;
  seed: number;
  model: string;
  method: AdvisorMethod;
}

/** The headroom closed at one measured training-set size: mean and sample standard deviation over seeds and tasks. */
export interface GainPoint {
  n_train: number;
  /** g = (metric - baseline) / (1 - baseline), averaged */
  mean: number;
  /** sample standard deviation of g (0 with one row) */
  sd: number;
  /** the median step budget of the rows */
  max_steps: number;
  rows: RowRef[];
}

/** Task kinds a rule may be fitted for; `any` pools both. */
export type RuleTaskKind = 'classification' | 'generation' | 'any';

/** Headroom closed by one method on one model variant, as a function of log2(n_train). */
export interface GainRule {
  model: string;
  model_params: number;
  method: AdvisorMethod;
  compression: { avg_bits: number; target_sparsity: number } | null;
  stored_weight_bytes: number;
  /** LoRA rank the rows were run with (the most common one) */
  lora_r: number;
  task_kind: RuleTaskKind;
  /** by ascending n_train */
  points: GainPoint[];
}

/** Optimizer steps at which validation peaked, by training-set size (guideline 2). */
export interface PeakRule {
  /** a method, or `any` when pooled over methods */
  method: AdvisorMethod | 'any';
  /** by ascending n_train: the median best step and the median step budget of the rows */
  points: { n_train: number; best_step: number; max_steps: number; rows: RowRef[] }[];
}

/** The LoRA-rank study of one model and method (guideline 4): g by rank, pooled over sizes, seeds and tasks. */
export interface RankRule {
  model: string;
  method: AdvisorMethod;
  ranks: { lora_r: number; mean: number; sd: number; rows: RowRef[] }[];
  best_r: number;
}

/** Everything the advisor knows, fitted by {@link fitAdvisorRules}; plain JSON (`rules.json`). */
export interface AdvisorRules {
  object: 'advisor.rules';
  version: 1;
  /** where the rows came from (the bench result file and the command that made it) */
  source: string;
  rows: number;
  gains: GainRule[];
  peak_steps: PeakRule[];
  lora_rank: RankRule[];
}

/** The advisor has no fitted rules (no rules.json yet): it answers nothing rather than invented numbers. */
export class AdvisorRulesMissingError extends Error {
  readonly code = 'advisor_rules_missing';
  constructor(detail: string) {
    super(detail);
    this.name = 'AdvisorRulesMissingError';
  }
}

/** A model id as the service names it: the folder name (`models/x` -> `x`). */
export const modelKey = (model: string) => model.replace(/\/+$/, '').split('/').pop() ?? model;

const compressionKey = (c: GuidelinesRun['compression']) => (c ? `${c.avg_bits}b/${c.target_sparsity}` : 'dense');

const refOf = (r: GuidelinesRun): RowRef => ({
  study: r.study,
  task: r.task,
  n_train: r.n_train,
  seed: r.seed,
  model: modelKey(r.model),
  method: r.method,
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x: number) => Math.round(x * 1e4) / 1e4;

/** The headroom a row closed, or null when its baseline leaves none. */
export function headroomClosed(r: Pick<GuidelinesRun, 'test_metric' | 'baseline'>): number | null {
  return r.baseline >= 1 ? null : (r.test_metric - r.baseline) / (1 - r.baseline);
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return m;
}

function gainPoints(rows: GuidelinesRun[]): GainPoint[] {
  return [...groupBy(rows, (r) => String(r.n_train)).values()]
    .map((rs) => {
      const g = rs.map((r) => headroomClosed(r) as number);
      return {
        n_train: rs[0].n_train,
        mean: round(mean(g)),
        sd: round(sd(g)),
        max_steps: median(rs.map((r) => r.max_steps)),
        rows: rs.map(refOf),
      };
    })
    .sort((a, b) => a.n_train - b.n_train);
}

const mostCommon = (xs: number[]) => [...groupBy(xs, String).values()].sort((a, b) => b.length - a.length || a[0] - b[0])[0][0];

/**
 * Fits the advisor's rules to the guidelines bench's rows.
 *
 * - gains: per model, method and compression, the headroom closed g = (metric - baseline) / (1 - baseline)
 *   at each measured n_train (mean and spread over seeds and tasks), once per task kind the rows cover and
 *   once pooled (`any`). The `lora_rank` study's rows are left out (they vary the rank, see lora_rank), and so
 *   are rows whose baseline leaves no headroom.
 * - peak_steps: the median step of the best validation value at each n_train, per method and pooled.
 * - lora_rank: the `lora_rank` study's g by rank per model and method, and the best rank.
 * @param source where the rows came from (kept in the rules)
 */
export function fitAdvisorRules(rows: GuidelinesRun[], source: string): AdvisorRules {
  const usable = rows.filter((r) => headroomClosed(r) !== null);
  const gainRows = usable.filter((r) => r.study !== 'lora_rank');
  const gains: GainRule[] = [];
  for (const rs of groupBy(gainRows, (r) => `${modelKey(r.model)}|${r.method}|${compressionKey(r.compression)}`).values()) {
    const kinds = [...new Set(rs.map((r) => r.task_kind))].sort();
    const base = {
      model: modelKey(rs[0].model),
      model_params: rs[0].model_params,
      method: rs[0].method,
      compression: rs[0].compression ? { avg_bits: rs[0].compression.avg_bits, target_sparsity: rs[0].compression.target_sparsity } : null,
      stored_weight_bytes: rs[0].stored_weight_bytes,
      lora_r: mostCommon(rs.map((r) => r.lora_r)),
    };
    for (const kind of kinds) gains.push({ ...base, task_kind: kind, points: gainPoints(rs.filter((r) => r.task_kind === kind)) });
    gains.push({ ...base, task_kind: 'any', points: gainPoints(rs) });
  }
  const peaked = rows.filter((r) => r.best_step !== null);
  const peakRule = (method: PeakRule['method'], rs: GuidelinesRun[]): PeakRule => ({
    method,
    points: [...groupBy(rs, (r) => String(r.n_train)).values()]
      .map((g) => ({
        n_train: g[0].n_train,
        best_step: median(g.map((r) => r.best_step as number)),
        max_steps: median(g.map((r) => r.max_steps)),
        rows: g.map(refOf),
      }))
      .sort((a, b) => a.n_train - b.n_train),
  });
  const peak_steps = [...groupBy(peaked, (r) => r.method).entries()].map(([m, rs]) => peakRule(m as AdvisorMethod, rs));
  if (peaked.length) peak_steps.push(peakRule('any', peaked));
  const lora_rank: RankRule[] = [];
  for (const rs of groupBy(
    usable.filter((r) => r.study === 'lora_rank'),
    (r) => `${modelKey(r.model)}|${r.method}`,
  ).values()) {
    const ranks = [...groupBy(rs, (r) => String(r.lora_r)).values()]
      .map((g) => {
        const gs = g.map((r) => headroomClosed(r) as number);
        return { lora_r: g[0].lora_r, mean: round(mean(gs)), sd: round(sd(gs)), rows: g.map(refOf) };
      })
      .sort((a, b) => a.lora_r - b.lora_r);
    // ties go to the smaller rank: less memory for the same gain (guideline 4)
    const best = ranks.reduce((b, x) => (x.mean > b.mean ? x : b));
    lora_rank.push({ model: modelKey(rs[0].model), method: rs[0].method, ranks, best_r: best.lora_r });
  }
  return { object: 'advisor.rules', version: 1, source, rows: rows.length, gains, peak_steps, lora_rank };
}

/** A value read off a rule at one n_train: interpolated between the two measured sizes around it. */
export interface RuleReading {
  value: number;
  /** the spread at the same place (interpolated like the value) */
  sd: number;
  /** n_train lies outside the measured sizes: the nearest measured value is used (no extrapolation) */
  outside: boolean;
  /** the rows of the measured sizes read */
  rows: RowRef[];
}

/**
 * Piecewise-linear interpolation in log2(n_train) between measured sizes; outside them, the nearest one.
 * @throws RangeError when `points` is empty
 */
export function interpolateLog2<P extends { n_train: number; rows: RowRef[] }>(
  points: P[],
  n: number,
  value: (p: P) => number,
  spread: (p: P) => number = () => 0,
): RuleReading {
  if (!points.length) throw new RangeError('interpolateLog2: no points');
  const first = points[0],
    last = points[points.length - 1];
  if (n <= first.n_train) return { value: value(first), sd: spread(first), outside: n < first.n_train, rows: first.rows };
  if (n >= last.n_train) return { value: value(last), sd: spread(last), outside: n > last.n_train, rows: last.rows };
  const i = points.findIndex((p) => p.n_train >= n);
  const a = points[i - 1],
    b = points[i];
  if (b.n_train === n) return { value: value(b), sd: spread(b), outside: false, rows: b.rows };
  const t = (Math.log2(n) - Math.log2(a.n_train)) / (Math.log2(b.n_train) - Math.log2(a.n_train));
  const lerp = (x: number, y: number) => x + t * (y - x);
  return { value: lerp(value(a), value(b)), sd: lerp(spread(a), spread(b)), outside: false, rows: [...a.rows, ...b.rows] };
}

/** g of a gain rule at n_train. */
export function gainAt(rule: GainRule, n: number): RuleReading {
  return interpolateLog2(
    rule.points,
    n,
    (p) => p.mean,
    (p) => p.sd,
  );
}

/** The step at which validation peaked at n_train (rounded up to a whole step, at least 1). */
export function peakStepAt(rule: PeakRule, n: number): RuleReading {
  const r = interpolateLog2(rule.points, n, (p) => p.best_step);
  return { ...r, value: Math.max(1, Math.ceil(r.value)) };
}

/** Where the bench writes the fitted rules: `packages/core/src/advisor/rules.json`. */
export const ADVISOR_RULES_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'advisor', 'rules.json');

/**
 * Reads fitted rules: from `path`, else {@link ADVISOR_RULES_FILE} (the bench's latest; the container image copies it too).
 * @throws AdvisorRulesMissingError when the file does not exist or does not hold advisor rules
 */
export function loadAdvisorRules(path?: string): AdvisorRules {
  const file = path ?? ADVISOR_RULES_FILE;
  if (!existsSync(file))
    throw new AdvisorRulesMissingError(
      `The advisor has no fitted rules (${path ?? ADVISOR_RULES_FILE} does not exist); run \`npm run bench -- --guidelines\` to measure and fit them`,
    );
  let rules: AdvisorRules;
  try {
    rules = JSON.parse(readFileSync(file, 'utf8')) as AdvisorRules;
  } catch (e) {
    throw new AdvisorRulesMissingError(`The advisor's rules at ${file} are not JSON: ${(e as Error).message}`);
  }
  if (rules?.object !== 'advisor.rules' || !Array.isArray(rules.gains))
    throw new AdvisorRulesMissingError(`${file} does not hold advisor rules (object "advisor.rules")`);
  return rules;
}
