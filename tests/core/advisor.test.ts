// The advisor (packages/core/src/advisor): rules fitted to guidelines-bench rows, and recommendations planned for
// a device from them. The rows are synthetic, built here, so every expected number can be worked out by hand.
import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  AdvisorRulesMissingError,
  fitAdvisorRules,
  gainAt,
  loadAdvisorRules,
  peakStepAt,
  type GuidelinesRun,
} from '../../packages/core/src/advisor/rules.js';
import {
  planCandidate,
  recommend,
  summarizeTrainingData,
  type AdvisorModel,
  type TrainingDataSummary,
} from '../../packages/core/src/advisor/recommend.js';
import { readModelSummary } from '../../packages/core/src/service/models.js';
import { parseLlamaConfig } from '../../packages/core/src/hf-config.js';
import type { DeviceProfile } from '../../packages/core/src/schedule/planner.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** A bench row with test metric baseline + g x (1 - baseline). */
function row(o: Partial<GuidelinesRun> & { g: number }): GuidelinesRun {
  const baseline = o.baseline ?? 0.5;
  return {
    study: 'methods',
    task: 'spam',
    task_kind: 'classification',
    classes: 2,
    model: 'models/edgetune-tiny-llama',
    model_params: 4e6,
    compression: null,
    stored_weight_bytes: 16e6,
    method: 'lora',
    n_train: 64,
    seed: 0,
    lora_r: 8,
    max_steps: 100,
    best_step: null,
    steps_run: 100,
    metric: 'accuracy',
    baseline,
    validation_curve: [],
    tune_s: 10,
    peak_rss_bytes: 5e8,
    ...o,
    test_metric: baseline + o.g * (1 - baseline),
  };
}

/** lora: g 0.2/0.3 at 64, 0.5 at 256; edge_llm: 0.1 at 64, 0.6 at 256 (+ 4-bit 0.55 at 256); rag: 0.4 flat. */
const ROWS: GuidelinesRun[] = [
  row({ method: 'lora', n_train: 64, seed: 0, g: 0.2 }),
  row({ method: 'lora', n_train: 64, seed: 1, g: 0.3 }),
  row({ method: 'lora', n_train: 256, seed: 0, g: 0.5 }),
  row({
    method: 'lora',
    n_train: 256,
    seed: 0,
    g: 0.9,
    task: 'names',
    task_kind: 'generation',
    classes: null,
    metric: 'exact_match',
    baseline: 0,
  }),
  row({ method: 'edge_llm', n_train: 64, g: 0.1 }),
  row({ method: 'edge_llm', n_train: 256, g: 0.6 }),
  row({ study: 'compressed_vs_smaller', method: 'edge_llm', n_train: 256, g: 0.55, compression: { avg_bits: 4, target_sparsity: 0.3 } }),
  row({ method: 'rag', n_train: 64, g: 0.4, lora_r: 0 }),
  row({ method: 'rag', n_train: 256, g: 0.4, lora_r: 0 }),
  row({ study: 'time', method: 'lora', n_train: 64, g: 0.25, best_step: 10, seed: 2 }),
  row({ study: 'time', method: 'lora', n_train: 64, g: 0.25, best_step: 14, seed: 3 }),
  row({ study: 'time', method: 'lora', n_train: 256, g: 0.5, best_step: 40, seed: 2 }),
  row({ study: 'lora_rank', method: 'lora', n_train: 256, lora_r: 4, g: 0.5 }),
  row({ study: 'lora_rank', method: 'lora', n_train: 256, lora_r: 8, g: 0.5 }),
  row({ study: 'lora_rank', method: 'lora', n_train: 256, lora_r: 16, g: 0.45 }),
  row({ method: 'lora', model: 'models/huge-llama', n_train: 256, g: 0.95 }),
];

const tiny = readModelSummary(join(ROOT, 'models', 'edgetune-tiny-llama'), 'edgetune-tiny-llama');
const advisorModel = (s: typeof tiny): AdvisorModel => ({
  id: s.id,
  shape: parseLlamaConfig(s.config),
  storedDtype: s.storedDtype,
  maxPositionEmbeddings: s.maxPositionEmbeddings,
});
const TINY = advisorModel(tiny);
// a 4096-wide, 32-layer model: far beyond the device's budget
const HUGE: AdvisorModel = {
  id: 'huge-llama',
  shape: parseLlamaConfig({
    model_type: 'llama',
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 2048,
  }),
  storedDtype: null,
  maxPositionEmbeddings: 2048,
};
const DEVICE: DeviceProfile = { memoryBudgetBytes: 4 * 2 ** 30, threads: 2, backend: 'cpu', matmulGflops: 20 };
const DATA: TrainingDataSummary = { n_train: 128, task_kind: 'classification', labels: [' ham', ' spam'], majority_share: 0.6 };

describe('fitAdvisorRules', () => {
  const rules = fitAdvisorRules(ROWS, 'synthetic rows');
  const lora = rules.gains.find((g) => g.model === 'edgetune-tiny-llama' && g.method === 'lora' && g.task_kind === 'classification')!;

  it('fits the headroom closed per size with its spread over seeds, interpolated in log2(n_train)', () => {
    expect(rules.object).toBe('advisor.rules');
    // the methods and time studies' classification rows at 64: 0.2, 0.3, 0.25, 0.25
    expect(lora.points.map((p) => p.n_train)).toEqual([64, 256]);
    expect(lora.points[0].mean).toBeCloseTo(0.25, 4);
    expect(lora.points[0].sd).toBeCloseTo(Math.sqrt(0.005 / 3), 4);
    expect(lora.points[0].rows).toHaveLength(4);
    // 128 lies halfway between 64 and 256 in log2
    expect(gainAt(lora, 128).value).toBeCloseTo((0.25 + 0.5) / 2, 4);
    const far = gainAt(lora, 4096);
    expect(far.value).toBeCloseTo(0.5, 4);
    expect(far.outside).toBe(true);
  });

  it('keeps the task kind as a factor where the rows have both, and a pooled rule', () => {
    const gen = rules.gains.find((g) => g.method === 'lora' && g.model === 'edgetune-tiny-llama' && g.task_kind === 'generation')!;
    expect(gen.points).toHaveLength(1);
    expect(gen.points[0].mean).toBeCloseTo(0.9, 4);
    const any = rules.gains.find((g) => g.method === 'lora' && g.model === 'edgetune-tiny-llama' && g.task_kind === 'any')!;
    // at 256: 0.5 (methods), 0.9 (generation), 0.5 (time)
    expect(any.points[1].mean).toBeCloseTo((0.5 + 0.9 + 0.5) / 3, 4);
    // the rank study varies the rank: not part of the gain curves
    expect(lora.points.flatMap((p) => p.rows).some((r) => r.study === 'lora_rank')).toBe(false);
  });

  it('finds where validation peaked by size, and the best LoRA rank', () => {
    const peak = rules.peak_steps.find((p) => p.method === 'lora')!;
    expect(peak.points.map((p) => [p.n_train, p.best_step])).toEqual([
      [64, 12],
      [256, 40],
    ]);
    expect(peakStepAt(peak, 128).value).toBe(26);
    const rank = rules.lora_rank.find((r) => r.method === 'lora')!;
    // ranks 4 and 8 tie: the smaller wins
    expect(rank.best_r).toBe(4);
    expect(JSON.parse(JSON.stringify(rules))).toEqual(rules);
  });

  it('refuses to answer without a rules file', () => {
    expect(() => loadAdvisorRules(join(tmpdir(), 'no-such-advisor-rules.json'))).toThrowError(AdvisorRulesMissingError);
    try {
      loadAdvisorRules(join(tmpdir(), 'no-such-advisor-rules.json'));
    } catch (e) {
      expect((e as AdvisorRulesMissingError).code).toBe('advisor_rules_missing');
    }
  });
});

describe('recommend', () => {
  const rules = fitAdvisorRules(ROWS, 'synthetic rows');
  const planFn = (budget: DeviceProfile) => (spec: Parameters<typeof planCandidate>[0]) => planCandidate(spec, budget, DATA.n_train);

  it('ranks by the fitted gains and cites the rows behind each candidate', () => {
    const rec = recommend({ data: DATA, hasValidation: true, timeBudgetS: 3600, models: [TINY] }, rules, planFn(DEVICE));
    const top = rec.candidates.map((c) => `${c.method}${c.compression ? `@${c.compression.avg_bits}` : ''}/${c.lora_r}`);
    // at 128 examples: edge 4-bit 0.55 (measured at 256 only: the nearest size is read) > rag 0.4 > lora r=4 and
    // r=8 0.375 > edge dense (0.1 + 0.6) / 2 = 0.35 > lora r=16 0.325
    expect(top).toEqual(['edge_llm@4/8', 'rag/null', 'lora/4', 'lora/8', 'edge_llm/8', 'lora/16']);
    expect(rec.candidates[0].expected.outside_measured).toBe(true);
    const values = rec.candidates.map((c) => c.expected.value);
    expect([...values].sort((a, b) => b - a)).toEqual(values);
    const rag = rec.candidates[1];
    expect(rag.expected.value).toBeCloseTo(0.6 + 0.4 * 0.4, 4);
    expect(rag.guidelines.map((g) => g.guideline)).toContain(1);
    for (const c of rec.candidates) {
      expect(c.rows.length).toBeGreaterThan(0);
      // the gain rests on the candidate's own rows; the peak step may come from other methods' rows (pooled)
      expect(c.rows.filter((r) => r.model === c.model && r.method === c.method).length).toBeGreaterThan(0);
      for (const g of c.guidelines.filter((x) => x.guideline !== 2)) expect(g.rows.every((r) => r.method === c.method)).toBe(true);
    }
    // lora at rank 16: the rank study's 0.45 vs 0.5 at the curve's rank 8 lowers the gain by 0.05
    const r16 = rec.candidates.find((c) => c.method === 'lora' && c.lora_r === 16)!;
    expect(r16.expected.gain).toBeCloseTo(0.375 - 0.05, 4);
    expect(r16.guidelines.find((g) => g.guideline === 4)!.rows.every((r) => r.study === 'lora_rank')).toBe(true);
    // early stopping with a validation file; steps where validation peaked (26 at 128 examples)
    const lora = rec.candidates.find((c) => c.method === 'lora' && c.lora_r === 8)!;
    expect(lora.steps).toBe(26);
    expect(lora.job.hyperparameters).toMatchObject({ max_steps: 26, lora_r: 8, early_stopping: { patience: 3 }, eval_steps: 'auto' });
  });

  it('offers compression only with the edge methods, and leaves out what the bench never measured', () => {
    const rec = recommend({ data: DATA, hasValidation: false, timeBudgetS: 3600, models: [TINY] }, rules, planFn(DEVICE));
    const compressed = rec.candidates.filter((c) => c.compression);
    expect(compressed.length).toBeGreaterThan(0);
    expect(compressed.every((c) => c.method === 'edge_llm' || c.method === 'rag_edge_llm')).toBe(true);
    // LUC's uniform rules, as the bench compresses
    expect(compressed[0].job.method.edge_llm?.compression).toEqual({
      avg_bits: 4,
      target_sparsity: 0.3,
      sparsity_rule: 'uniform',
      bits_rule: 'uniform',
    });
    expect(compressed[0].guidelines.map((g) => g.guideline)).toContain(3);
    expect(rec.candidates.every((c) => c.job.hyperparameters.early_stopping === undefined)).toBe(true);
    const missing = rec.left_out.filter((l) => l.code === 'no_bench_rows');
    expect(missing.map((l) => l.method)).toEqual(expect.arrayContaining(['rag_lora', 'rag_edge_llm']));
    expect(missing.find((l) => l.method === 'edge_llm' && l.compression?.avg_bits === 8)).toBeDefined();
  });

  it('offers each LUC budget the bench measured at a bit-width', () => {
    const more = fitAdvisorRules(
      [
        ...ROWS,
        row({
          study: 'compressed_vs_smaller',
          method: 'edge_llm',
          n_train: 256,
          g: 0.5,
          compression: { avg_bits: 4, target_sparsity: 0.5 },
        }),
      ],
      'synthetic rows',
    );
    const rec = recommend({ data: DATA, hasValidation: false, timeBudgetS: 3600, models: [TINY] }, more, planFn(DEVICE));
    const fourBit = rec.candidates
      .filter((c) => c.compression?.avg_bits === 4)
      .map((c) => [c.compression?.target_sparsity, c.expected.gain]);
    expect(fourBit).toEqual([
      [0.3, 0.55],
      [0.5, 0.5],
    ]);
  });

  it("leaves out a model that does not fit the memory budget with the planner's reason", () => {
    const rec = recommend({ data: DATA, hasValidation: true, timeBudgetS: 3600, models: [TINY, HUGE] }, rules, planFn(DEVICE));
    expect(rec.candidates.some((c) => c.model === 'huge-llama')).toBe(false);
    const huge = rec.left_out.find((l) => l.model === 'huge-llama' && l.method === 'lora')!;
    expect(huge.code).toBe('does_not_fit');
    expect(huge.reason).toMatch(/needs about \d+ MiB of memory \(peak RSS\), has 4096 MiB/);
  });

  it('caps the steps by the time budget through the forecast step time, and leaves out what cannot train at all', () => {
    const stepMs = planCandidate({ model: TINY, method: 'lora', compression: null, lora_r: 8, steps: 26 }, DEVICE, DATA.n_train).forecast
      .stepMs;
    // room for 15 steps: between the earliest measured peak (12) and the target (26)
    const budget = (15.5 * stepMs) / 1000;
    const rec = recommend({ data: DATA, hasValidation: true, timeBudgetS: budget, models: [TINY] }, rules, planFn(DEVICE));
    const lora = rec.candidates.find((c) => c.method === 'lora' && c.lora_r === 8)!;
    expect(lora.steps).toBe(15);
    expect(lora.forecast.total_s).toBeLessThanOrEqual(budget);
    const none = recommend({ data: DATA, hasValidation: true, timeBudgetS: stepMs / 2000, models: [TINY] }, rules, planFn(DEVICE));
    expect(none.candidates.every((c) => c.method === 'rag')).toBe(true);
    expect(none.left_out.find((l) => l.method === 'lora')!.code).toBe('over_time_budget');
  });

  it('summarizes training data: classes and majority share, or generation', () => {
    const recs = [' spam', ' ham', ' ham', ' ham'].map((completion) => ({ prompt: 'x', completion }));
    expect(summarizeTrainingData(recs)).toEqual({
      n_train: 4,
      task_kind: 'classification',
      labels: [' ham', ' spam'],
      majority_share: 0.75,
    });
    const gen = Array.from({ length: 40 }, (_, i) => ({ prompt: 'w', completion: ` W${i}` }));
    expect(summarizeTrainingData(gen).task_kind).toBe('generation');
  });
});
