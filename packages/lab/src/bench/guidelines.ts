/**
 * `npm run bench -- --guidelines`: the study of Qin et al., "Empirical Guidelines for Deploying LLMs onto
 * Resource-constrained Edge Devices" (arXiv 2406.03777), on this project's models and tasks, each run a child
 * process (one BLAS thread; `parallel` children at once):
 * - `methods`: RAG, vanilla LoRA, Edge-LLM and RAG + Edge-LLM x amount of training data x task;
 * - `time`: the validation curves of the `methods` runs (metric against step and wall time): where validation
 *   peaks with little data, and what training past the peak costs (no extra runs);
 * - `compressed_vs_smaller`: the larger pretrained model compressed with LUC (8 and 4 bits) against the smaller
 *   one uncompressed, at about equal weight memory, with limited data;
 * - `lora_rank`: LoRA rank on the constrained device (metric, peak RSS, tokens/s).
 * Every run trains to `maxSteps` with validation every `evalSteps` and keeps the best-on-validation weights
 * (equal steps, cosine learning rate); with `timeBudgetS` every run gets that much wall time instead (equal
 * time: `maxSteps` is only a cap, the learning rate stays constant after warmup since the steps that fit are
 * not known in advance), so a method with cheaper steps takes more of them;
 * its test metric (voted accuracy, or voted exact match for generation) is measured by `edgetune-engine eval` on
 * the bundle, as a user would. Baselines per task and model: majority class (classification) and the untuned
 * model's zero-shot metric. The rows are `GuidelinesRun`s (packages/core advisor); the advisor's rules are fitted
 * on the tasks not held out, and written to `packages/core/src/advisor/rules.json`.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADVISOR_TUNING, fitAdvisorRules, loadLlamaConfig, readModelSummary, uniformPolicy, type GuidelinesRun } from '@edgetune/core';
import { advisorModelOf, backendInfo, localDevice, runTuning, Rng, type TuneJobOptions } from '@edgetune/engine';
import { writeGuidelinesReport } from './guidelines-report.js';
import { checkAdvisor, type AdvisorCheck } from './guidelines-advisor.js';

/** The device of the advisor check: a 4 GiB box (every candidate the bench measures fits it). */
const ADVISOR_CHECK_MEMORY_BYTES = 4 * 2 ** 30;
/** The time a user affords in the advisor check, s: longer than any measured run, so steps are not cut short. */
const ADVISOR_CHECK_BUDGET_S = 600;

const here = dirname(fileURLToPath(import.meta.url));
const LAB_CLI = join(here, '..', 'cli.js');
const REPO = resolve(here, '..', '..', '..', '..');
const ENGINE_CLI = join(REPO, 'packages', 'engine', 'bin', 'edgetune-engine.js');

/** The studies, in the order they run. */
export const GUIDELINES_STUDIES = ['methods', 'compressed_vs_smaller', 'lora_rank'] as const;
export type GuidelinesStudy = (typeof GUIDELINES_STUDIES)[number];
/** Methods of the `methods` study (the job vocabulary's `method.type`). */
export const STUDY_METHODS = ['rag', 'lora', 'edge_llm', 'rag_edge_llm'] as const;
type Method = GuidelinesRun['method'];

/** A task the bench builds with `edgetune-lab data NAME` (see the data commands). */
export interface TaskData {
  name: string;
  kind: 'classification' | 'generation';
  /** distinct completions (classification), null for generation */
  classes: number | null;
  dir: string;
  /** the full training split, prompt/completion records as JSONL lines */
  trainLines: string[];
  validation: string;
  test: string;
  /** majority-class accuracy on the test subset (the training split's most frequent completion); 0 for generation */
  majority: number;
}

/** What one child run does. Paths are absolute; sizes in examples, steps are optimizer steps. */
export interface GuidelinesTask {
  study: GuidelinesStudy | 'zero_shot';
  label: string;
  task: string;
  taskKind: 'classification' | 'generation';
  classes: number | null;
  model: string;
  modelName: string;
  method: Method;
  bits: number | null;
  nTrain: number;
  seed: number;
  loraR: number;
  maxSteps: number;
  /** wall time per training run, s (equal-time design); null: every run trains `maxSteps` (equal steps) */
  timeBudgetS: number | null;
  evalSteps: number;
  batch: number;
  maxLength: number;
  lr: number;
  train: string;
  validation: string;
  test: string;
  baseline: number;
  ragK: number;
}

/** Settings of a bench run (defaults: {@link DEFAULT_GUIDELINES}). */
export interface GuidelinesOptions {
  out: string;
  studies: GuidelinesStudy[];
  seeds: number[];
  sizes: number[];
  /** tasks the rules are fitted on */
  tasks: string[];
  /** task held out of the fit (the advisor is checked on it); run in the `methods` study like the others */
  heldOut: string | null;
  smallModel: string;
  largeModel: string;
  maxSteps: number;
  /** equal-time design: wall time per training run, s (see {@link GuidelinesTask.timeBudgetS}); null: equal steps */
  timeBudgetS: number | null;
  evalSteps: number;
  validationExamples: number;
  testExamples: number;
  /** test examples of a generation task (each is decoded once per exit path and once voted) */
  generationTestExamples: number;
  parallel: number;
  ragK: number;
  /** where the advisor's fitted rules go (the core package reads them from there) */
  rulesOut: string;
}

export const DEFAULT_GUIDELINES: Omit<GuidelinesOptions, 'out'> = {
  studies: [...GUIDELINES_STUDIES],
  seeds: [1, 2, 3],
  sizes: [16, 64, 256, 1024],
  tasks: ['spam-assassin', 'first-names', 'cmudict'],
  heldOut: 'spam-assassin-3',
  smallModel: join(REPO, 'models', 'edgetune-tiny-llama'),
  largeModel: join(REPO, 'models', 'edgetune-small-llama'),
  maxSteps: 120,
  timeBudgetS: null,
  evalSteps: 15,
  validationExamples: 60,
  testExamples: 240,
  generationTestExamples: 150,
  parallel: 2,
  ragK: 2,
  rulesOut: join(REPO, 'packages', 'core', 'src', 'advisor', 'rules.json'),
};

const modeOf: Record<Method, { mode: 'edge_llm' | 'vanilla' | 'none'; rag: boolean }> = {
  rag: { mode: 'none', rag: true },
  lora: { mode: 'vanilla', rag: false },
  edge_llm: { mode: 'edge_llm', rag: false },
  rag_edge_llm: { mode: 'edge_llm', rag: true },
  rag_lora: { mode: 'vanilla', rag: true },
};

/** Peak resident memory of this process so far (Linux ru_maxrss), bytes. */
const maxRss = () => process.resourceUsage().maxRSS * 1024;

/**
 * A model folder's parameters and weight bytes as stored (core readModelSummary: from the safetensors headers),
 * and the bytes of its embedding (and untied lm_head), which LUC leaves in their stored precision.
 */
function modelWeights(modelDir: string): { params: number; bytes: number; embeddingBytes: number } {
  const s = readModelSummary(modelDir, modelName(modelDir));
  const perParam = s.storedDtype === 'F16' || s.storedDtype === 'BF16' ? 2 : 4;
  const tied = loadLlamaConfig(modelDir).tieWordEmbeddings;
  return {
    params: s.paramCount,
    bytes: s.weightBytes ?? s.paramCount * perParam,
    embeddingBytes: s.vocabSize * s.hiddenSize * (tied ? 1 : 2) * perParam,
  };
}

/** Runs `edgetune-engine eval` on an adapter (or the base model) and returns its JSON report. */
function engineEval(model: string, adapter: string | null, data: string, generate: boolean): Promise<Record<string, unknown>> {
  const args = [
    ENGINE_CLI,
    'eval',
    '--model',
    model,
    '--data',
    data,
    '--json',
    ...(adapter ? ['--adapter', adapter] : []),
    ...(generate ? ['--generate'] : []),
  ];
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) =>
      code === 0 ? res(JSON.parse(out)) : rej(new Error(`eval exited with ${code}: ${err.trim().split('\n').pop()}`)),
    );
  });
}

/** The voted test metric of an eval report: exact match for generation, else accuracy under the report's voting rule. */
function votedMetric(r: Record<string, unknown>, kind: 'classification' | 'generation'): number {
  if (kind === 'generation') return (r.exactMatch as { voted: number }).voted;
  const rule = (r.votingRule as string | null) ?? 'max';
  const voted = r.voted as Record<string, { accuracy: number | null }>;
  const perExit = r.perExit as { accuracy: number | null }[];
  return (voted[rule]?.accuracy ?? perExit[perExit.length - 1]?.accuracy ?? 0) as number;
}

/** Runs one task in this process (the `bench-guidelines-run` child command); returns its row. */
export async function guidelinesRun(t: GuidelinesTask): Promise<GuidelinesRun & { label: string; per_exit: number[] }> {
  const generation = t.taskKind === 'generation';
  if (t.study === 'zero_shot') {
    const r = await engineEval(t.model, null, t.test, generation);
    return rowOf(t, votedMetric(r, t.taskKind), [], null, 0, 0, maxRss(), modelWeights(t.model).bytes);
  }
  const out = mkdtempSync(join(tmpdir(), `edgetune-guidelines-${t.label}-`));
  const { mode, rag } = modeOf[t.method];
  const L = loadLlamaConfig(t.model).numHiddenLayers;
  const policy = t.bits === null ? undefined : uniformPolicy(L, t.bits);
  const curve: GuidelinesRun['validation_curve'] = [];
  const opts: TuneJobOptions = {
    modelDir: t.model,
    trainFile: t.train,
    validationFile: t.validation,
    outDir: out,
    maxLength: t.maxLength,
    ...(rag ? { rag: { k: t.ragK } } : {}),
    ...(mode === 'none' ? {} : { evalEvery: t.evalSteps }),
    ...(mode !== 'none' && t.timeBudgetS !== null ? { timeBudgetMs: t.timeBudgetS * 1000 } : {}),
    compression: policy ? { targetSparsity: 0, avgBits: t.bits!, policy, calibrationSequences: 8, calibrationTokens: 128 } : undefined,
    tune: {
      mode,
      steps: mode === 'none' ? 0 : t.maxSteps,
      microBatch: t.batch,
      lr: t.lr,
      seed: t.seed,
      warmupSteps: Math.min(10, Math.floor(t.maxSteps / 10)),
      ...(t.timeBudgetS !== null ? { lrSchedule: 'constant' as const } : {}),
      lora: { r: t.loraR, alpha: 2 * t.loraR, dropout: 0.05 },
      // Edge-LLM as the advisor's jobs run it (ADVISOR_TUNING): every window trains from the start, so the
      // validation curve of the vote is meaningful at every evaluation
      schedule: ADVISOR_TUNING.edge_llm.schedule,
      headRank: ADVISOR_TUNING.edge_llm.head_rank,
      prefix: ADVISOR_TUNING.edge_llm.prefix,
    },
    onEval: (p) => {
      curve.push({ step: p.step, elapsed_s: p.elapsedMs / 1000, value: p.value });
    },
  };
  const report = await runTuning(opts);
  const test = await engineEval(t.model, out, t.test, generation);
  const perExit = ((test.perExit as { accuracy: number | null }[]) ?? []).map((e) => e.accuracy ?? 0);
  // compressed: the packed linears plus the embedding (and untied lm_head) as stored
  const w = modelWeights(t.model);
  const weightBytes = report.compression ? report.compression.report.storedBytes + w.embeddingBytes : w.bytes;
  const row = rowOf(
    t,
    votedMetric(test, t.taskKind),
    curve,
    report.bestStep,
    report.steps,
    report.trainMs / 1000,
    report.peakRssBytes,
    weightBytes,
  );
  const v = report.validation;
  if (v) {
    const voted = v.voted[report.votingRule ?? 'max'] ?? v.perExit[v.perExit.length - 1];
    row.validation_value = generation ? voted.loss : (voted.accuracy ?? 0);
  }
  rmSync(out, { recursive: true, force: true });
  return { ...row, per_exit: generation ? ((test.exactMatch as { perExit: number[] } | undefined)?.perExit ?? []) : perExit };
}

function rowOf(
  t: GuidelinesTask,
  metric: number,
  curve: GuidelinesRun['validation_curve'],
  bestStep: number | null,
  steps: number,
  tuneS: number,
  peakRss: number,
  weightBytes: number,
): GuidelinesRun & { label: string; per_exit: number[] } {
  return {
    label: t.label,
    study: t.study === 'zero_shot' ? 'methods' : t.study,
    task: t.task,
    task_kind: t.taskKind,
    classes: t.classes,
    model: t.modelName,
    model_params: modelWeights(t.model).params,
    compression: t.bits === null ? null : { avg_bits: t.bits, target_sparsity: 0 },
    stored_weight_bytes: Math.round(weightBytes),
    method: t.method,
    n_train: t.nTrain,
    seed: t.seed,
    lora_r: t.loraR,
    max_steps: t.study === 'zero_shot' ? 0 : t.maxSteps,
    ...(t.timeBudgetS !== null && t.study !== 'zero_shot' ? { time_budget_s: t.timeBudgetS } : {}),
    best_step: bestStep,
    steps_run: steps,
    metric: t.taskKind === 'generation' ? 'exact_match' : 'accuracy',
    test_metric: metric,
    baseline: t.baseline,
    validation_curve: curve,
    tune_s: tuneS,
    peak_rss_bytes: peakRss,
    per_exit: [],
  };
}

/** Starts one child run; resolves with its row, or a `failed` record carrying the child's last line. */
function child(task: GuidelinesTask, dir: string): Promise<Record<string, unknown>> {
  const file = join(dir, `${task.label}.json`);
  writeFileSync(file, JSON.stringify(task));
  return new Promise((res) => {
    const p = spawn(process.execPath, [LAB_CLI, 'bench-guidelines-run', '--task', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, EDGETUNE_BLAS_THREADS: '1' },
    });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code, signal) => {
      try {
        if (code === 0) return res(JSON.parse(out.trim().split('\n').pop()!));
      } catch {}
      const last = err.trim().split('\n').filter(Boolean).pop() ?? '';
      res({ label: task.label, failed: true, exitCode: code, signal, error: last });
    });
  });
}

/** Builds a task with `edgetune-lab data NAME --out DIR` (once) and takes its fixed validation and test subsets. */
async function buildTask(name: string, dir: string, o: GuidelinesOptions): Promise<TaskData> {
  const td = join(dir, name);
  if (!existsSync(join(td, 'task.json'))) {
    await new Promise<void>((res, rej) =>
      spawn(process.execPath, [LAB_CLI, 'data', name, '--out', td], { stdio: ['ignore', 'ignore', 'inherit'] }).on('close', (code) =>
        code === 0 ? res() : rej(new Error(`edgetune-lab data ${name} exited with ${code}`)),
      ),
    );
  }
  const meta = JSON.parse(readFileSync(join(td, 'task.json'), 'utf8')) as { kind: 'classification' | 'generation'; labels?: string[] };
  const lines = (f: string) => readFileSync(join(td, f), 'utf8').split('\n').filter(Boolean);
  const trainLines = lines('train.jsonl');
  const validation = join(td, 'bench-validation.jsonl');
  const test = join(td, 'bench-test.jsonl');
  writeFileSync(validation, `${lines('validation.jsonl').slice(0, o.validationExamples).join('\n')}\n`);
  const testLines = lines('test.jsonl').slice(0, meta.kind === 'generation' ? o.generationTestExamples : o.testExamples);
  writeFileSync(test, `${testLines.join('\n')}\n`);
  let majority = 0;
  if (meta.kind === 'classification') {
    const counts = new Map<string, number>();
    for (const l of trainLines) {
      const c = JSON.parse(l).completion as string;
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0][0];
    majority = testLines.filter((l) => JSON.parse(l).completion === top).length / testLines.length;
  }
  return {
    name,
    kind: meta.kind,
    classes: meta.kind === 'classification' ? (meta.labels?.length ?? null) : null,
    dir: td,
    trainLines,
    validation,
    test,
    majority,
  };
}

/** The first `n` records of the training split shuffled by `seed` (the same seed gives the same subset). */
function trainSubset(t: TaskData, n: number, seed: number): string {
  const file = join(t.dir, `bench-train-n${n}-s${seed}.jsonl`);
  if (!existsSync(file)) {
    const rng = new Rng(seed * 7919 + n);
    const idx = t.trainLines.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    writeFileSync(
      file,
      `${idx
        .slice(0, Math.min(n, idx.length))
        .map((i) => t.trainLines[i])
        .join('\n')}\n`,
    );
  }
  return file;
}

/** The run list of the chosen studies. */
function planRuns(o: GuidelinesOptions, tasks: Map<string, TaskData>, zeroShot: Map<string, number>): GuidelinesTask[] {
  const runs: GuidelinesTask[] = [];
  const small = { dir: o.smallModel, name: modelName(o.smallModel) };
  const large = { dir: o.largeModel, name: modelName(o.largeModel) };
  const base = (study: GuidelinesStudy, t: TaskData, model: { dir: string; name: string }, method: Method, n: number, seed: number) => {
    const key = `${t.name}/${model.name}`;
    const baseline = t.kind === 'classification' ? t.majority : (zeroShot.get(key) ?? 0);
    return {
      study,
      task: t.name,
      taskKind: t.kind,
      classes: t.classes,
      model: model.dir,
      modelName: model.name,
      method,
      bits: null as number | null,
      nTrain: Math.min(n, t.trainLines.length),
      seed,
      loraR: 8,
      maxSteps: o.maxSteps,
      timeBudgetS: o.timeBudgetS,
      evalSteps: o.evalSteps,
      batch: ADVISOR_TUNING.batch_size,
      maxLength: t.name.startsWith('spam') ? 192 : 64, // the mail tasks as the Edge-LLM bench runs them
      lr: ADVISOR_TUNING.learning_rate,
      train: trainSubset(t, n, seed),
      validation: t.validation,
      test: t.test,
      baseline,
      ragK: o.ragK,
      label: '',
    };
  };
  const label = (r: Omit<GuidelinesTask, 'label'>) =>
    `${r.study}-${r.task}-${r.modelName}-${r.method}${r.bits ? `-${r.bits}bit` : ''}-r${r.loraR}-n${r.nTrain}-s${r.seed}${r.timeBudgetS === null ? '' : `-t${r.timeBudgetS}`}`;
  const add = (r: GuidelinesTask) => runs.push({ ...r, label: label(r) });
  const methodTasks = [...o.tasks, ...(o.heldOut ? [o.heldOut] : [])];
  for (const seed of o.seeds) {
    if (o.studies.includes('methods'))
      for (const name of methodTasks)
        for (const n of o.sizes) for (const m of STUDY_METHODS) add(base('methods', tasks.get(name)!, small, m, n, seed));
    if (o.studies.includes('compressed_vs_smaller'))
      for (const name of methodTasks.filter((x) => tasks.get(x)!.kind === 'classification'))
        for (const n of o.sizes.filter((s) => s <= 256)) {
          const t = tasks.get(name)!;
          add(base('compressed_vs_smaller', t, small, 'edge_llm', n, seed));
          add(base('compressed_vs_smaller', t, large, 'edge_llm', n, seed));
          for (const bits of [8, 4]) add({ ...base('compressed_vs_smaller', t, large, 'edge_llm', n, seed), bits });
        }
    if (o.studies.includes('lora_rank'))
      for (const name of o.tasks.filter((x) => tasks.get(x)!.kind === 'classification'))
        for (const r of [2, 8, 32])
          for (const m of ['lora', 'edge_llm'] as const) add({ ...base('lora_rank', tasks.get(name)!, small, m, 256, seed), loraR: r });
  }
  return runs;
}

function modelName(dir: string): string {
  return dir.split('/').filter(Boolean).pop()!;
}

/** Runs `tasks` through at most `parallel` children at once, in order; reports each as it ends. */
async function pool<T>(items: T[], parallel: number, run: (x: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, parallel) }, async () => {
      while (next < items.length) {
        const i = next++;
        await run(items[i], i);
      }
    }),
  );
}

/**
 * The guidelines bench. Writes `o.out` (JSON rows and summary; rows are kept as they end, so an interrupted
 * bench keeps what it measured and resumes: rows already in `o.out` (or in a `merge` file) with the same label are
 * not run again),
 * the plots and tables beside it (`<out without .json>/`), and the advisor's rules fitted on `o.tasks`.
 */
export async function runGuidelinesBench(
  partial: Partial<GuidelinesOptions> & {
    out?: string;
    command: string;
    /** result files of other runs whose rows (and commands) join these */
    merge?: string[];
    /** run nothing: fit, check and report the rows already measured */
    reportOnly?: boolean;
  },
): Promise<void> {
  const date = new Date().toISOString().slice(0, 10);
  const o: GuidelinesOptions = {
    ...DEFAULT_GUIDELINES,
    ...partial,
    out: resolve(partial.out ?? join(REPO, 'bench', 'results', `guidelines-${date}.json`)),
  };
  mkdirSync(dirname(o.out), { recursive: true });
  if (!existsSync(join(o.largeModel, 'config.json')) && o.studies.includes('compressed_vs_smaller'))
    throw new Error(`--guidelines: the larger model ${o.largeModel} is missing (compressed_vs_smaller needs it)`);
  const work = join(tmpdir(), `edgetune-guidelines-${createHash('sha256').update(o.out).digest('hex').slice(0, 8)}`);
  mkdirSync(work, { recursive: true });
  const names = [...new Set([...o.tasks, ...(o.heldOut ? [o.heldOut] : [])])];
  const tasks = new Map<string, TaskData>();
  for (const n of names) tasks.set(n, await buildTask(n, join(work, 'data'), o));
  const before = existsSync(o.out)
    ? (JSON.parse(readFileSync(o.out, 'utf8')) as { rows: Record<string, unknown>[]; commands?: string[] })
    : null;
  const merged = (partial.merge ?? []).map(
    (f) => JSON.parse(readFileSync(f, 'utf8')) as { rows: Record<string, unknown>[]; commands?: string[] },
  );
  const previous = [...(before?.rows ?? [])];
  for (const m of merged) for (const r of m.rows) if (!previous.some((p) => p.label === r.label)) previous.push(r);
  const commands = [...new Set([...(before?.commands ?? []), ...merged.flatMap((m) => m.commands ?? []), partial.command])];
  const rows: Record<string, unknown>[] = previous.filter((r) => !r.failed);
  const done = new Set(rows.map((r) => r.label as string));
  const t0 = performance.now();
  const save = (check?: AdvisorCheck[]) =>
    writeFileSync(
      o.out,
      `${JSON.stringify(
        {
          commands,
          date,
          machine: { cpus: cpus().length, model: cpus()[0]?.model, backend: backendInfo() },
          options: {
            ...o,
            smallModel: modelName(o.smallModel),
            largeModel: modelName(o.largeModel),
            out: undefined,
            rulesOut: relative(REPO, o.rulesOut),
          },
          rows,
          ...(check ? { advisor_check: check } : {}),
        },
        null,
        1,
      )}\n`,
    );
  // Zero-shot metric of each untuned model per task: the generation tasks' baseline.
  const models = [o.smallModel, ...(o.studies.includes('compressed_vs_smaller') ? [o.largeModel] : [])];
  // the advisor check ranks every model some row was measured on
  const checkModels = existsSync(join(o.largeModel, 'config.json')) ? [o.smallModel, o.largeModel] : [o.smallModel];
  const zeroShot = new Map<string, number>();
  const zsTasks: GuidelinesTask[] = [];
  for (const t of tasks.values())
    for (const m of models)
      zsTasks.push({
        study: 'zero_shot',
        label: `zero_shot-${t.name}-${modelName(m)}`,
        task: t.name,
        taskKind: t.kind,
        classes: t.classes,
        model: m,
        modelName: modelName(m),
        method: 'rag',
        bits: null,
        nTrain: 0,
        seed: 0,
        loraR: 0,
        maxSteps: 0,
        timeBudgetS: null,
        evalSteps: 0,
        batch: 8,
        maxLength: 256,
        lr: 0,
        train: '',
        validation: t.validation,
        test: t.test,
        baseline: t.majority,
        ragK: 0,
      });
  const runOne = async (task: GuidelinesTask, i: number, total: number) => {
    if (done.has(task.label) || partial.reportOnly) return;
    const r = await child(task, work);
    rows.push({ ...r, zero_shot: task.study === 'zero_shot' });
    save();
    const m = (r.test_metric as number | undefined)?.toFixed(3) ?? `failed: ${r.error}`;
    process.stderr.write(`[guidelines ${i + 1}/${total} ${((performance.now() - t0) / 60000).toFixed(1)} min] ${task.label}: ${m}\n`);
  };
  await pool(zsTasks, o.parallel, (t, i) => runOne(t, i, zsTasks.length));
  for (const r of rows) if (r.zero_shot) zeroShot.set(`${r.task}/${r.model}`, r.test_metric as number);
  const runs = planRuns(o, tasks, zeroShot);
  await pool(runs, o.parallel, (t, i) => runOne(t, i, runs.length));
  const measured = rows.filter((r) => !r.failed && !r.zero_shot) as unknown as GuidelinesRun[];
  const fitRows = measured.filter((r) => o.tasks.includes(r.task));
  const rules = fitAdvisorRules(fitRows, `bench/results/${modelName(o.out)}`);
  writeFileSync(o.rulesOut, `${JSON.stringify(rules, null, 2)}\n`); // as the formatter writes JSON
  let check: AdvisorCheck[] = [];
  if (o.heldOut && measured.some((r) => r.task === o.heldOut)) {
    const held = tasks.get(o.heldOut)!;
    check = checkAdvisor(measured, rules, {
      task: o.heldOut,
      trainFileOf: (n, seed) => trainSubset(held, n, seed),
      models: checkModels.map(advisorModelOf),
      device: localDevice({ memoryBudgetBytes: ADVISOR_CHECK_MEMORY_BYTES }),
      timeBudgetS: ADVISOR_CHECK_BUDGET_S,
      probes: 3,
      defaultModel: modelName(o.smallModel),
    });
  }
  await writeGuidelinesReport(o.out, rows as never, {
    heldOut: o.heldOut,
    commands,
    check,
    checkSettings: { memoryBudgetBytes: ADVISOR_CHECK_MEMORY_BYTES, timeBudgetS: ADVISOR_CHECK_BUDGET_S, probes: 3 },
  });
  save(check);
  process.stderr.write(`[guidelines] ${rows.length} rows in ${((performance.now() - t0) / 60000).toFixed(1)} min -> ${o.out}\n`);
}
