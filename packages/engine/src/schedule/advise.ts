/**
 * The advisor on this machine (`edgetune-engine advise`): the core advisor's estimate (rules fitted to the
 * guidelines bench, candidates planned for a device) over local model folders and a local training file, and
 * its `measure` mode: the top candidates tuned here as short probes, ranked by what they measured.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  compareMeasured,
  loadAdvisorRules,
  MEASURE_PROBES,
  measuredOf,
  probeHyperparameters,
  resolveJobConfig,
  type Candidate,
  type JobConfigInput,
  type MeasuredMetric,
  parseLlamaConfig,
  planCandidate,
  readJsonlFile,
  readModelSummary,
  recommend,
  summarizeTrainingData,
  type AdvisorModel,
  type DeviceProfile,
  type Recommendation,
} from '@edgetune/core';
import { engineCompressionOptions, engineRunOptions, engineTuneOptions } from '../tune/job-options.js';
import { runTuning, type TuneJobOptions, type TuneJobReport } from '../tune/run.js';

/** Model folders: those named, else every subfolder of `modelsDir` with a config.json. */
export function modelFolders(dirs: string[] | null, modelsDir: string): string[] {
  if (dirs?.length) return dirs;
  if (!existsSync(modelsDir)) return [];
  return readdirSync(modelsDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(modelsDir, e.name, 'config.json')))
    .map((e) => join(modelsDir, e.name))
    .sort();
}

/** A model folder as the advisor sees it (id = the folder name, as the service and the bench name it). @throws ModelConfigError */
export function advisorModelOf(dir: string): AdvisorModel {
  const s = readModelSummary(dir, basename(dir));
  return { id: s.id, shape: parseLlamaConfig(s.config), storedDtype: s.storedDtype, maxPositionEmbeddings: s.maxPositionEmbeddings };
}

/** Options of {@link adviseLocally}. */
export interface AdviseOptions {
  train: string;
  /** a validation file: candidates train with early stopping */
  val?: string;
  modelDirs: string[];
  device: DeviceProfile;
  /** seconds */
  timeBudgetS: number;
  /** rules file; default ADVISOR_RULES_FILE */
  rulesPath?: string;
}

/**
 * The advisor's estimate for local files and models.
 * @throws AdvisorRulesMissingError without fitted rules; DatasetError for a bad training file
 */
export async function adviseLocally(o: AdviseOptions): Promise<Recommendation> {
  const rules = loadAdvisorRules(o.rulesPath);
  const data = summarizeTrainingData(await readJsonlFile(o.train));
  const models = o.modelDirs.map(advisorModelOf);
  return recommend({ data, hasValidation: !!o.val, timeBudgetS: o.timeBudgetS, models }, rules, (spec) =>
    planCandidate(spec, o.device, data.n_train),
  );
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;

/** The recommendation as text: the ranked table, then each left-out candidate with its reason. */
export function formatRecommendation(r: Recommendation): string {
  const d = r.data;
  const lines = [
    `data: ${d.n_train} examples, ${d.task_kind}${d.majority_share !== null ? ` (majority class ${pct(d.majority_share)})` : ''}; rules: ${r.rules_source}`,
    '',
    ['#', 'model', 'method', 'bits', 'r', 'steps', 'expected', '± sd', 'peak RSS', 'time', 'guidelines'].join('\t'),
  ];
  r.candidates.forEach((c, i) => {
    lines.push(
      [
        i,
        c.model,
        c.method,
        c.compression ? c.compression.avg_bits : 16,
        c.lora_r ?? '-',
        c.steps,
        `${pct(c.expected.value)} ${c.expected.metric}${c.expected.outside_measured ? ' (nearest measured size)' : ''}`,
        pct(c.expected.gain_sd * (1 - c.expected.baseline)),
        mib(c.forecast.peak_rss_bytes),
        `${c.forecast.total_s.toFixed(1)} s`,
        c.guidelines.map((g) => g.guideline).join(','),
      ].join('\t'),
    );
  });
  if (!r.candidates.length) lines.push('(no candidate fits: see below)');
  if (r.left_out.length) {
    lines.push('', 'left out:');
    for (const l of r.left_out)
      lines.push(
        l.code === 'no_bench_rows'
          ? `  ${l.reason}`
          : `  ${l.model} ${l.method}${l.compression ? ` ${l.compression.avg_bits}-bit` : ''}${l.lora_r ? ` r=${l.lora_r}` : ''}: ${l.reason}`,
      );
  }
  return lines.join('\n');
}

/** Options of {@link measureLocally}: those of the estimate, with the validation file required. */
export interface MeasureOptions extends AdviseOptions {
  val: string;
  /** probe outputs go to `<outDir>/probe-<i>`, the result to `<outDir>/recommendation.json` */
  outDir: string;
  /** the probes' seed (default 42) */
  seed?: number;
  log?: (line: string) => void;
}

/** One probe of {@link measureLocally}: a candidate tuned here on its share of the time budget. */
export interface LocalProbe {
  /** index into the recommendation's candidates */
  candidate: number;
  status: 'succeeded' | 'failed';
  /** the validation metric it measured (the service's measuredOf); null when it failed or measured nothing */
  measured: MeasuredMetric | null;
  /** the error that failed it (`code`: the error's name) */
  error: { code: string; message: string } | null;
  out_dir: string;
  /** its share of the time budget, seconds */
  time_budget_s: number;
  /** steps it was given (null: method `rag` trains nothing) and took */
  max_steps: number | null;
  steps: number | null;
  stopped_by: TuneJobReport['stoppedBy'] | null;
}

/** What {@link measureLocally} returns and writes as `recommendation.json`: the estimate and the ranked probes. */
export interface LocalMeasurement extends Recommendation {
  mode: 'measure';
  /** `failed` when no probe measured anything */
  status: 'succeeded' | 'failed';
  time_budget_s: number;
  /** the best measured candidate (null: none measured) */
  best_candidate: number | null;
  /** measured probes best first (compareMeasured), then the others */
  probes: LocalProbe[];
}

/**
 * A candidate's job (with the probe's hyperparameters) as runTuning options, resolved as POST /v1/jobs resolves
 * it (core resolveJobConfig) and mapped as the worker maps a job (engineTuneOptions, engineRunOptions; a LUC
 * budget compresses with its rules, the policy profiled here).
 * @throws JobConfigError when the job does not fit the model or the data
 */
export function probeTuneOptions(
  job: JobConfigInput,
  model: { numLayers: number; hiddenSize: number; maxPositionEmbeddings: number },
  nTrain: number,
  nVal: number,
  seed: number,
): Pick<TuneJobOptions, 'maxLength' | 'tune' | 'rag' | 'timeBudgetMs' | 'earlyStopping' | 'evalEvery' | 'compression'> {
  const r = resolveJobConfig({ ...job, seed }, model, nTrain, nVal);
  const budget = r.method.edge_llm?.compression ?? null;
  return {
    maxLength: r.hyperparameters.max_length,
    tune: engineTuneOptions(r.method, r.hyperparameters, r.seed, r.totalSteps),
    ...engineRunOptions(r.method, r.hyperparameters),
    ...(budget ? { compression: engineCompressionOptions(budget) } : {}),
  };
}

/** The validation metric of a run, read as the service reads a finished job's result (measuredOf). */
function measuredOfReport(r: TuneJobReport): MeasuredMetric | null {
  const v = r.validation;
  return measuredOf({
    voting_rule: r.votingRule,
    voted_accuracy: v && r.votingRule ? (v.voted[r.votingRule]?.accuracy ?? null) : null,
    exits: v ? v.perExit.map((e) => ({ accuracy: e.accuracy, loss: e.loss })) : [],
    validation_curve: r.validationCurve.map((p) => ({ metric: p.metric, value: p.value })),
  });
}

/**
 * The advisor's `measure` mode on this machine, as the service runs it: the estimate, then the top
 * {@link MEASURE_PROBES} candidates tuned one after another in this process, each on an equal share of the time
 * budget with its probe hyperparameters (probeHyperparameters: early stopping, steps cut to the share), and
 * ranked by their measured validation metric. A probe that fails is listed with its error. Writes
 * `<outDir>/recommendation.json`.
 * @throws AdvisorRulesMissingError without fitted rules; DatasetError for a bad training or validation file
 */
export async function measureLocally(o: MeasureOptions): Promise<LocalMeasurement> {
  const rec = await adviseLocally(o);
  const seed = o.seed ?? 42;
  const nVal = (await readJsonlFile(o.val)).length;
  const top = rec.candidates.slice(0, MEASURE_PROBES);
  const share = o.timeBudgetS / Math.max(1, top.length);
  mkdirSync(o.outDir, { recursive: true });
  const probes: LocalProbe[] = [];
  for (const [i, c] of top.entries()) probes.push(await runProbe(o, c, i, share, rec.data.n_train, nVal, seed));
  const ranked = probes.filter((p) => p.measured).sort((a, b) => compareMeasured(a.measured!, b.measured!));
  const out: LocalMeasurement = {
    mode: 'measure',
    status: ranked.length ? 'succeeded' : 'failed',
    time_budget_s: o.timeBudgetS,
    best_candidate: ranked[0]?.candidate ?? null,
    ...rec,
    probes: [...ranked, ...probes.filter((p) => !p.measured)],
  };
  writeFileSync(join(o.outDir, 'recommendation.json'), `${JSON.stringify(out, null, 2)}\n`);
  return out;
}

/** Tunes candidate `i` in `<outDir>/probe-<i>`; any error fails the probe, not the recommendation. */
async function runProbe(o: MeasureOptions, c: Candidate, i: number, shareS: number, nTrain: number, nVal: number, seed: number) {
  const modelDir = o.modelDirs.find((d) => basename(d) === c.model)!;
  const outDir = join(o.outDir, `probe-${i}`);
  const probe: LocalProbe = {
    candidate: i,
    status: 'failed',
    measured: null,
    error: null,
    out_dir: outDir,
    time_budget_s: shareS,
    max_steps: null,
    steps: null,
    stopped_by: null,
  };
  try {
    const s = readModelSummary(modelDir, c.model);
    const hp = { ...c.job.hyperparameters, ...probeHyperparameters(c, shareS, s.numLayers) };
    probe.max_steps = hp.max_steps ?? null;
    const job = { method: c.job.method, hyperparameters: hp } as JobConfigInput;
    o.log?.(
      `probe ${i}: ${c.model} ${c.method}, ${shareS.toFixed(1)} s, ${hp.max_steps !== undefined ? `up to ${hp.max_steps} steps` : 'no training'}`,
    );
    const r = await runTuning({
      modelDir,
      trainFile: o.train,
      validationFile: o.val,
      outDir,
      ...probeTuneOptions(job, s, nTrain, nVal, seed),
      device: o.device,
      log: o.log,
    });
    Object.assign(probe, { status: 'succeeded', measured: measuredOfReport(r), steps: r.steps, stopped_by: r.stoppedBy });
  } catch (e) {
    const err = e as Error;
    probe.error = { code: err.name, message: err.message };
  }
  return probe;
}

/** A measurement as text: the probes best first with what they measured, then the estimate's table. */
export function formatMeasurement(m: LocalMeasurement): string {
  const lines = [
    `probes (${m.time_budget_s} s shared by ${m.probes.length}), best first:`,
    ['rank', '#', 'model', 'method', 'measured', 'steps', 'stopped by'].join('\t'),
  ];
  m.probes.forEach((p, k) => {
    const c = m.candidates[p.candidate];
    const measured = p.measured ? `${p.measured.metric} ${p.measured.value.toFixed(4)}` : p.error ? `failed: ${p.error.message}` : 'n/a';
    lines.push([k, p.candidate, c.model, c.method, measured, `${p.steps ?? '-'}/${p.max_steps ?? '-'}`, p.stopped_by ?? '-'].join('\t'));
  });
  lines.push(`best: ${m.best_candidate ?? 'none measured'}`, '', formatRecommendation(m));
  return lines.join('\n');
}
