// The guidelines bench: its statistics, the advisor check's regrets, the plots, and a tiny run through the CLI.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fitAdvisorRules, type AdvisorModel, type GuidelinesRun } from '@edgetune/core';
import { meanSd, pastPeak, renderSvg } from '../../packages/lab/src/bench/guidelines-report.js';
import { candidateKey, checkAdvisor } from '../../packages/lab/src/bench/guidelines-advisor.js';
import { REPO_ROOT } from '../engine/helpers.js';

const cli = join(REPO_ROOT, 'packages', 'lab', 'dist', 'cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgetune-guidelines-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny: AdvisorModel = {
  id: 'tiny',
  shape: {
    vocabSize: 4096,
    hiddenSize: 192,
    intermediateSize: 512,
    numHiddenLayers: 8,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 48,
    tieWordEmbeddings: true,
  } as never,
  storedDtype: 'F32',
  maxPositionEmbeddings: 1024,
};

function row(p: Partial<GuidelinesRun> & Pick<GuidelinesRun, 'task' | 'method' | 'n_train' | 'seed' | 'test_metric'>): GuidelinesRun {
  return {
    study: 'methods',
    task_kind: 'classification',
    classes: 2,
    model: 'tiny',
    model_params: 4e6,
    compression: null,
    stored_weight_bytes: 16e6,
    lora_r: 8,
    max_steps: 40,
    best_step: 20,
    steps_run: 40,
    metric: 'accuracy',
    baseline: 0.5,
    validation_curve: [],
    tune_s: 10,
    peak_rss_bytes: 2e8,
    ...p,
  };
}

describe('guidelines bench', () => {
  it('mean and sample sd; the validation peak and the time spent past it', () => {
    expect(meanSd([1, 2, 3])).toEqual({ mean: 2, sd: 1, n: 3 });
    expect(meanSd([0.5]).sd).toBe(0);
    const r = row({
      task: 't',
      method: 'lora',
      n_train: 16,
      seed: 1,
      test_metric: 0.7,
      validation_curve: [
        { step: 10, elapsed_s: 1, value: 0.6 },
        { step: 20, elapsed_s: 2, value: 0.8 },
        { step: 30, elapsed_s: 3.5, value: 0.7 },
      ],
    });
    expect(pastPeak(r)).toEqual({ peakStep: 20, peakValue: 0.8, lastValue: 0.7, secondsPast: 1.5 });
    // generation curves hold the loss: the peak is the lowest value
    expect(pastPeak({ ...r, task_kind: 'generation', metric: 'exact_match' })?.peakStep).toBe(10);
  });

  it('the advisor check: regrets against the best measured candidate, and a probe is the run cut at its share of the budget', () => {
    // Fitted on task A, where RAG closes most of the headroom; checked on task B, where LoRA wins on test.
    const fit = [1, 2].flatMap((seed) => [
      row({ task: 'A', method: 'rag', n_train: 16, seed, test_metric: 0.9 }),
      row({ task: 'A', method: 'lora', n_train: 16, seed, test_metric: 0.6 }),
      row({ task: 'A', method: 'edge_llm', n_train: 16, seed, test_metric: 0.7 }),
    ]);
    const rules = fitAdvisorRules(fit, 'test');
    const curve = (late: number) => [
      { step: 10, elapsed_s: 5, value: 0.55 },
      { step: 40, elapsed_s: 100, value: late },
    ];
    const held = [
      row({ task: 'B', method: 'rag', n_train: 16, seed: 1, test_metric: 0.6, validation_value: 0.62 }),
      // LoRA is the best on test, but only late in its run: a short probe does not see it
      row({ task: 'B', method: 'lora', n_train: 16, seed: 1, test_metric: 0.8, validation_curve: curve(0.9) }),
      row({ task: 'B', method: 'edge_llm', n_train: 16, seed: 1, test_metric: 0.7, validation_curve: curve(0.7) }),
    ];
    const train = join(dir, 'b.jsonl');
    writeFileSync(
      train,
      `${Array.from({ length: 16 }, (_, i) => JSON.stringify({ prompt: `x${i}`, completion: i % 2 ? ' yes' : ' no' })).join('\n')}\n`,
    );
    const device = { memoryBudgetBytes: 4 * 2 ** 30, threads: 2, backend: 'wasm', matmulGflops: 100 } as never;
    const base = { task: 'B', trainFileOf: () => train, models: [tiny], device, probes: 3, defaultModel: 'tiny' };
    const [short] = checkAdvisor([...fit, ...held], rules, { ...base, timeBudgetS: 30 });
    expect(short.measured).toBe(3);
    expect(short.best).toEqual({ candidate: 'tiny lora r=8', test_metric: 0.8 });
    expect(short.estimate.candidate).toBe('tiny rag'); // what the fitted rules rank first
    expect(short.estimate.regret_points).toBeCloseTo(20, 6);
    // 10 s per probe: RAG's 0.62 beats the probes' early 0.55
    expect(short.measure.candidate).toBe('tiny rag');
    expect(short.default?.regret_points).toBeCloseTo(10, 6);
    const [long] = checkAdvisor([...fit, ...held], rules, { ...base, timeBudgetS: 600 });
    expect(long.measure.candidate).toBe('tiny lora r=8'); // 200 s per probe reaches LoRA's late peak
    expect(long.measure.regret_points).toBe(0);
    expect(candidateKey({ model: 'm', method: 'edge_llm', compression: { avg_bits: 4 }, lora_r: 8 })).toBe('m edge_llm 4-bit r=8');
  });

  it('renders a Vega-Lite plot to SVG without a browser', async () => {
    const svg = await renderSvg({
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: 'a readable title',
      data: {
        values: [
          { n: 16, v: 0.5 },
          { n: 64, v: 0.7 },
        ],
      },
      mark: 'line',
      encoding: { x: { field: 'n', type: 'quantitative' }, y: { field: 'v', type: 'quantitative' } },
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('a readable title');
  });

  it('refuses an unknown study before measuring anything', () => {
    const r = run(['bench', '--guidelines', '--studies', 'methods,vibes']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--studies: unknown vibes \(one of methods, compressed_vs_smaller, lora_rank\)/);
  });

  it('refuses a time budget that is not a positive number of seconds', () => {
    const r = run(['bench', '--guidelines', '--time-budget-s', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--time-budget-s must be a positive number of seconds, got "0"/);
  });

  it('equal time: every training run stops at the time budget, far below its step cap', () => {
    const out = join(dir, 'gt', 'guidelines.json');
    const args = ['--studies', 'methods', '--tasks', 'first-names', '--held-out', 'none', '--sizes', '16', '--seeds', '1'];
    const r = run([
      'bench',
      '--guidelines',
      ...args,
      '--max-steps',
      '100000',
      '--time-budget-s',
      '4',
      '--out',
      out,
      '--rules-out',
      join(dir, 'gt', 'rules.json'),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(readFileSync(out, 'utf8')) as { rows: (GuidelinesRun & { zero_shot: boolean; label: string })[] };
    const trained = j.rows.filter((x) => !x.zero_shot && x.method !== 'rag');
    expect(trained.map((x) => x.method).sort()).toEqual(['edge_llm', 'lora', 'rag_edge_llm']);
    for (const m of trained) {
      expect(m.time_budget_s).toBe(4);
      expect(m.label).toMatch(/-t4$/);
      expect(m.steps_run).toBeGreaterThan(0);
      expect(m.steps_run).toBeLessThan(100000);
      // the budget is checked after each step: the run ends within one step (and one evaluation) of it
      expect(m.tune_s).toBeLessThan(4 + 10);
    }
  });

  it('a tiny run: baselines, every method, tables, plots and fitted rules', () => {
    const out = join(dir, 'g', 'guidelines.json');
    const rulesOut = join(dir, 'g', 'rules.json');
    const r = run([
      'bench',
      '--guidelines',
      '--studies',
      'methods',
      '--tasks',
      'first-names',
      '--held-out',
      'none',
      '--sizes',
      '16',
      '--seeds',
      '1',
      '--max-steps',
      '4',
      '--out',
      out,
      '--rules-out',
      rulesOut,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(readFileSync(out, 'utf8')) as { rows: (GuidelinesRun & { zero_shot: boolean; failed?: boolean })[] };
    expect(j.rows.filter((x) => x.failed)).toEqual([]);
    expect(j.rows.filter((x) => x.zero_shot)).toHaveLength(1);
    const methods = j.rows.filter((x) => !x.zero_shot);
    expect(methods.map((x) => x.method).sort()).toEqual(['edge_llm', 'lora', 'rag', 'rag_edge_llm']);
    for (const m of methods) {
      expect(m.n_train).toBe(16);
      expect(m.test_metric).toBeGreaterThanOrEqual(0);
      expect(m.test_metric).toBeLessThanOrEqual(1);
      expect(m.steps_run).toBe(m.method === 'rag' ? 0 : 4);
      if (m.method !== 'rag') expect(m.validation_curve.length).toBeGreaterThan(0);
    }
    const md = readFileSync(out.replace(/\.json$/, '.md'), 'utf8');
    expect(md).toMatch(/\| 16 \| .* \|/);
    expect(existsSync(join(dir, 'g', 'guidelines', 'methods.svg'))).toBe(true);
    const rules = JSON.parse(readFileSync(rulesOut, 'utf8'));
    expect(rules.object).toBe('advisor.rules');
    expect(new Set(rules.gains.map((g: { method: string }) => g.method))).toEqual(new Set(['edge_llm', 'lora', 'rag', 'rag_edge_llm']));
  });
});
