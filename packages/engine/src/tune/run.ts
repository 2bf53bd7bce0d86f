/**
 * One tuning job end to end, as the CLI and the worker run it: load the base model and tokenizer,
 * encode the JSONL data, run adaptive layer tuning (checkpointing and resuming when asked), evaluate
 * every exit and every voting rule on the validation data, choose the rule, and write the artifacts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LlamaModel } from '../model/llama.js';
import { DEFAULT_LORA, savePeftAdapter, type LoraConfig } from '../model/lora.js';
import { loadTokenizer, type EngineTokenizer } from '../tokenizer/index.js';
import { readJsonlFile } from '@edgetune/core';
import { encodeRecord } from '../data/encode.js';
import type { TrainingRecord } from '@edgetune/core';
import { AdaptiveTrainer, DEFAULT_TUNE, scoredPositions, type StepReport, type TuneOptions } from './trainer.js';
import type { Example } from './batches.js';
import { hasTrainerCheckpoint, loadTrainerCheckpoint, saveTrainerCheckpoint } from './checkpoint.js';
import { chooseRule, evaluatePaths, type EvalReport } from '../infer/evaluate.js';
import { plainPath, saveEdgeAdapter, savePlainManifest, writeJson } from './artifacts.js';
import { augmentRecord, RagIndex, resolveRagOptions, saveRagIndex, type RagAugmentation, type RagOptions } from '../retrieve/index.js';
import { materializeHeads } from './exits.js';
import {
  defaultEvalEvery,
  trainerPaths,
  ValidationMonitor,
  type EarlyStoppingOptions,
  type StopReason,
  type ValidationPoint,
} from './early-stopping.js';
import type { VotingRule } from '../infer/voting.js';
import {
  loadLlamaConfig,
  plan as makePlan,
  plannerStoredDtype,
  readWeightIndex,
  type LlamaConfig,
  storedDtype,
  tensorHeapCeilingOf,
  type DeviceProfile,
  type Plan,
  type PlanInput,
} from '@edgetune/core';
import { measureStepFactor } from '../schedule/speed.js';
import { backendInfo, plannerSgemmPeak } from '../backend/index.js';
import { frozenKernelActive } from '../backend/frozen.js';
import { freemem } from 'node:os';
import {
  buildPolicy,
  compressModel,
  profileSensitivity,
  type CalibrationSet,
  type CompressionReport,
  type LucPolicy,
  type PolicyOptions,
  type PruneMethod,
  type SensitivityReport,
} from '../compress/luc.js';

/** LUC settings of a job: a stored policy to reuse, or a budget to profile and build one for. */
export interface CompressionOptions extends Partial<PolicyOptions> {
  targetSparsity: number;
  avgBits: number;
  method?: PruneMethod;
  /** 0 = per-channel scales */
  groupSize?: number;
  /** fake-quantize linear inputs per token to this many bits while tuning (LLM-QAT, STE); absent = off */
  activationBits?: number;
  /** reuse this policy (and skip profiling) */
  policy?: LucPolicy;
  /** calibration sequences x tokens taken from the training data */
  calibrationSequences?: number;
  calibrationTokens?: number;
  /**
   * called with the policy and the fresh sensitivity report (null when reused) before compression, to
   * store them; returning a policy compresses with that one instead (e.g. one a concurrent job stored first)
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a callback that returns nothing keeps the profiled policy
  onPolicy?: (policy: LucPolicy, report: SensitivityReport | null) => LucPolicy | void | Promise<LucPolicy | void>;
}

/**
 * Calibration sequences from training examples: their token ids concatenated in file order and cut into
 * `n` windows of `len` tokens (SparseGPT's random-window recipe, made deterministic).
 */
export function calibrationFromExamples(examples: Example[], n: number, len: number, source: string): CalibrationSet {
  const stream: number[] = [];
  for (const e of examples) {
    stream.push(...e.inputIds);
    if (stream.length >= n * len) break;
  }
  if (stream.length < len) throw new Error(`not enough training tokens for calibration (${stream.length} < ${len})`);
  const ids: number[][] = [];
  for (let i = 0; i < n && (i + 1) * len <= stream.length; i++) ids.push(stream.slice(i * len, (i + 1) * len));
  return { ids, description: `${ids.length} x ${len} tokens: the first training examples of ${source}, concatenated` };
}

/** Inputs of {@link runTuning}. Paths are folders/files on disk. */
export interface TuneJobOptions {
  modelDir: string;
  trainFile: string;
  validationFile?: string;
  outDir: string;
  /** tokens per example after truncation */
  maxLength?: number;
  /** `mode: 'none'` trains nothing: the base model is evaluated and bundled as is (with `rag`: RAG alone) */
  tune?: Partial<Omit<TuneOptions, 'lora' | 'mode'>> & { mode?: TuneOptions['mode'] | 'none'; lora?: Partial<LoraConfig> };
  /**
   * retrieval-augmented prompts (absent: none): a BM25 index over the training records; each training prompt
   * gets its top-k neighbours but itself (OPPU), validation prompts their top-k; written as `rag_index.json`
   */
  rag?: RagOptions;
  /** examples per evaluation forward */
  evalBatchSize?: number;
  /** save a resumable checkpoint every N optimizer steps into `<outDir>/checkpoint` (0 = never) */
  checkpointEvery?: number;
  /** asked after every step; true saves a checkpoint now (e.g. a worker shutting down on SIGTERM) */
  shouldCheckpoint?: (step: number) => boolean;
  /** resume from `<outDir>/checkpoint` when it exists */
  resume?: boolean;
  /**
   * the device the job must fit (memory budget in bytes, threads; a host process that holds more than a
   * bare engine CLI passes its own base RSS, DeviceProfile.baseRssBytes); when given, the planner chooses
   * micro-batch / accumulation, exit layers and prefix caching, and the report compares its forecast with
   * the measured peak memory and step time. `true` = this machine (free memory, its cores).
   */
  device?: Partial<DeviceProfile> | true;
  /** layer-wise unified compression before tuning (absent = dense model) */
  compression?: CompressionOptions;
  onStep?: (r: StepReport) => void | Promise<void>;
  /** stop once the tuning wall time (steps + in-loop evaluations) reaches this many ms; checked between steps */
  timeBudgetMs?: number;
  /** stop after `patience` in-loop evaluations without an improvement of at least `minDelta`; needs validation data */
  earlyStopping?: EarlyStoppingOptions;
  /**
   * optimizer steps between in-loop validation evaluations (and the last step); default with validation data
   * and earlyStopping or timeBudgetMs: {@link defaultEvalEvery}, else none. When points were evaluated, the
   * weights saved are the best point's.
   */
  evalEvery?: number;
  /** called with each in-loop validation point */
  onEval?: (p: ValidationPoint) => void | Promise<void>;
  onCheckpoint?: (step: number, dir: string) => void | Promise<void>;
  /** aborts between steps (cancel); the run throws an AbortError-named Error */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** What {@link runTuning} returns and writes as `metrics.json`. Units: ms, bytes, tokens. */
export interface TuneJobReport {
  mode: TuneOptions['mode'] | 'none';
  steps: number;
  trainExamples: number;
  validationExamples: number;
  wallMs: number;
  trainMs: number;
  tokens: number;
  tokensPerSec: number;
  /** matmul FLOPs of the training steps (analytic) and their rate over training time */
  flops: number;
  gflopsPerSec: number;
  peakRssBytes: number;
  /** time to load the base model (config, weights tensor by tensor), ms */
  loadMs: number;
  /** bytes of frozen weights kept outside the TF.js heap after compression (stored 16-bit or LUC-packed) */
  storedWeightBytes: number;
  finalLoss: number;
  votingRule: VotingRule | null;
  validation: EvalReport | null;
  /** in-loop validation points, in step order (empty without in-loop evaluation) */
  validationCurve: ValidationPoint[];
  /** step of the best eligible point, whose weights were saved; null when none was evaluated */
  bestStep: number | null;
  stoppedBy: StopReason;
  outDir: string;
  compression: { policy: LucPolicy; report: CompressionReport; sensitivity: SensitivityReport | null } | null;
  /** the plan the run followed, and what was measured against its forecast */
  plan: {
    plan: Plan;
    measured: { peakTfBytes: number; peakRssBytes: number; stepMs: number };
    error: { peakTfBytes: number; stepMs: number };
  } | null;
}

/** Fills a device profile from this machine where fields are missing (measures matmul throughput). */
export function localDevice(d: Partial<DeviceProfile> = {}): DeviceProfile {
  const info = backendInfo();
  return {
    memoryBudgetBytes: d.memoryBudgetBytes ?? freemem(),
    threads: d.threads ?? info?.blasThreads ?? 1,
    backend: d.backend ?? info?.backend ?? 'wasm',
    matmulGflops: d.matmulGflops ?? plannerSgemmPeak().gflops,
    ...(d.tensorBudgetBytes === undefined ? {} : { tensorBudgetBytes: d.tensorBudgetBytes }),
    ...(d.baseRssBytes === undefined ? {} : { baseRssBytes: d.baseRssBytes }),
    ...(d.stepTimeFactor === undefined ? {} : { stepTimeFactor: d.stepTimeFactor }),
    ...(() => {
      const ceiling = d.tensorHeapCeilingBytes ?? tensorHeapCeilingOf(d.backend ?? info?.backend ?? 'wasm');
      return ceiling === undefined ? {} : { tensorHeapCeilingBytes: ceiling };
    })(),
    frozenKernel: d.frozenKernel ?? (frozenKernelActive() ? 'native' : 'tensor'),
  };
}

/**
 * {@link localDevice}, plus this machine's step-time factor where the profile states none
 * (schedule/speed.ts measureStepFactor, ~2 s of a reference training workload; logged through `log`).
 */
export async function measuredDevice(d: Partial<DeviceProfile> = {}, log?: (line: string) => void): Promise<DeviceProfile> {
  const dev = localDevice(d);
  if (dev.stepTimeFactor === undefined) {
    const f = await measureStepFactor(dev);
    dev.stepTimeFactor = f.factor;
    log?.(
      `device: SGEMM ${dev.matmulGflops.toFixed(0)} GFLOP/s, reference step ${f.measuredMs.toFixed(1)} ms vs ${f.forecastMs.toFixed(1)} forecast (${f.reading.toFixed(2)}): step-time factor ${f.factor.toFixed(2)} (lowest of ${f.readings} readings in 15 min)`,
    );
  }
  return dev;
}

/** A tuning request whose options contradict each other (e.g. vanilla LoRA with compression). */
export class TuneConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TuneConfigError';
  }
}

/** A job whose plan cannot fit the device's memory budget (a user error: ask for less, or more memory). */
export class PlanNotFeasibleError extends Error {
  constructor(readonly plan: Plan) {
    super(`the job does not fit the device: ${plan.reason}`);
    this.name = 'PlanNotFeasibleError';
  }
}

/**
 * Reads and tokenizes a JSONL file; with `rag`, the examples' prompts carry their retrieved examples
 * (`records` stay as read). `excludeSelf`: record i is document i of the index (the index's own training
 * file) and is never retrieved for itself.
 * @throws DatasetError naming the bad line.
 */
export async function loadExamples(
  file: string,
  tok: EngineTokenizer,
  maxLength: number,
  opts: { rag?: RagAugmentation | null; excludeSelf?: boolean } = {},
): Promise<{ records: TrainingRecord[]; examples: Example[] }> {
  const records = await readJsonlFile(file);
  const { rag, excludeSelf } = opts;
  const inputs = rag ? records.map((r, i) => augmentRecord(tok, rag, r, excludeSelf ? { exclude: i } : {})) : records;
  return { records, examples: inputs.map((r) => encodeRecord(tok, r, { maxLength })) };
}

/** Full options with defaults filled in. */
export function resolveTuneOptions(o: TuneJobOptions['tune'] = {}): TuneOptions {
  const { lora, ...rest } = o;
  return { ...DEFAULT_TUNE, ...rest, lora: { ...DEFAULT_LORA, ...lora } } as TuneOptions;
}

/**
 * Steps between in-loop validation evaluations for a job (0 = none), from its options.
 * @throws TuneConfigError naming the field for a bad timeBudgetMs, earlyStopping or evalEvery, or for early
 *   stopping / evalEvery without a validation file
 */
export function evalEveryOf(
  o: Pick<TuneJobOptions, 'timeBudgetMs' | 'earlyStopping' | 'evalEvery' | 'validationFile'>,
  steps: number,
): number {
  const { timeBudgetMs: budget, earlyStopping: es, evalEvery } = o;
  if (budget !== undefined && !(Number.isFinite(budget) && budget > 0))
    throw new TuneConfigError(`timeBudgetMs must be a positive number of ms, got ${budget}`);
  if (es && !(Number.isInteger(es.patience) && es.patience > 0))
    throw new TuneConfigError(`earlyStopping.patience must be a positive integer, got ${es.patience}`);
  if (es && !(Number.isFinite(es.minDelta) && es.minDelta >= 0))
    throw new TuneConfigError(`earlyStopping.minDelta must be a number >= 0, got ${es.minDelta}`);
  if (evalEvery !== undefined && !(Number.isInteger(evalEvery) && evalEvery > 0))
    throw new TuneConfigError(`evalEvery must be a positive integer, got ${evalEvery}`);
  if (!o.validationFile) {
    if (es) throw new TuneConfigError('earlyStopping needs a validation file (validationFile)');
    if (evalEvery !== undefined) throw new TuneConfigError('evalEvery needs a validation file (validationFile)');
    return 0;
  }
  return evalEvery ?? (es || budget !== undefined ? defaultEvalEvery(steps) : 0);
}

/**
 * What the planner is asked for a job (what {@link runTuning} plans with): the model, how its weights are stored,
 * the tuning options and the training examples' lengths (90th percentile for the step, mean for the prefix
 * cache, longest for the heap ceiling) and scored positions (90th percentile).
 * @param dtype the weights' stored dtype (safetensors headers); maxLength the step's length, tokens, when there are
 *   no examples; policy the LUC bits and sparsity per layer, or null
 */
export function planInputOf(
  config: LlamaConfig,
  dtype: string | null,
  opts: TuneOptions,
  examples: readonly Example[],
  maxLength: number,
  policy: PlanInput['policy'],
  groupSize?: number,
): PlanInput {
  const lens = examples.map((e) => e.inputIds.length).sort((a, b) => a - b);
  const scored = examples.map((e) => scoredPositions(e.labels)).sort((a, b) => a - b);
  return {
    model: config,
    storedDtype: plannerStoredDtype(dtype),
    mode: opts.mode,
    exitLayers: opts.exitLayers,
    loraR: opts.lora.r,
    loraTargets: opts.lora.targetModules,
    headRank: opts.headRank ?? 0,
    prefix: opts.prefix,
    schedule: opts.schedule,
    batchSize: opts.microBatch * opts.gradAccum,
    seqLen: lens[Math.floor(lens.length * 0.9)] ?? maxLength,
    meanSeqLen: lens.length ? lens.reduce((a, b) => a + b, 0) / lens.length : undefined,
    maxSeqLen: lens[lens.length - 1],
    steps: opts.steps,
    trainExamples: examples.length,
    policy,
    groupSize,
    labelledPerExample: scored[Math.floor(scored.length * 0.9)],
  };
}

/**
 * Runs a tuning job. Writes `<outDir>/edge_llm.json`, `edge_llm.safetensors`, `peft/`, `metrics.json`
 * (vanilla: a PEFT adapter, `adapter_config.json` + `adapter_model.safetensors`, `edge_llm.json` and `metrics.json`;
 * mode none: `edge_llm.json` and `metrics.json`); with `rag`, `rag_index.json` too.
 * @throws DatasetError / ModelConfigError / AdapterError / TuneConfigError for bad inputs; Error named AbortError when aborted.
 */
export async function runTuning(o: TuneJobOptions): Promise<TuneJobReport> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const maxLength = o.maxLength ?? 256;
  const opts = resolveTuneOptions(o.tune);
  // Vanilla LoRA is the uncompressed baseline; its artifact is a plain PEFT adapter of the base model.
  if (opts.mode === 'vanilla' && o.compression)
    throw new TuneConfigError('compression applies to edge_llm tuning; vanilla LoRA tunes the uncompressed model');
  const none = o.tune?.mode === 'none'; // no training: the base model (+ RAG) is evaluated and bundled
  if (none && o.compression) throw new TuneConfigError('compression applies to edge_llm tuning; mode none keeps the base model');
  const evalEvery = evalEveryOf(o, opts.steps);
  const tok = await loadTokenizer(o.modelDir);
  const config = loadLlamaConfig(o.modelDir);
  const dtype = storedDtype(readWeightIndex(o.modelDir)); // from the safetensors headers: how the weights are stored
  const padId = tok.padId ?? tok.eosId ?? 0;
  const rag: RagAugmentation | null = o.rag
    ? { index: RagIndex.build(await readJsonlFile(o.trainFile)), ...resolveRagOptions(o.rag), maxLength }
    : null;
  const train = await loadExamples(o.trainFile, tok, maxLength, { rag, excludeSelf: true });
  const val = o.validationFile ? await loadExamples(o.validationFile, tok, maxLength, { rag }) : null;
  // The plan comes before the weights are read: a job the device cannot hold is refused with the figures,
  // not aborted half-way through loading. Before compression the policy is the budget's uniform bits.
  const dev = o.device && !none ? await measuredDevice(o.device === true ? {} : o.device, log) : null;
  const planInput = (policy: PlanInput['policy']): PlanInput =>
    planInputOf(config, dtype, opts, train.examples, maxLength, policy, o.compression?.groupSize);
  if (dev) {
    const c = o.compression;
    const L = config.numHiddenLayers;
    const budgetPolicy = c
      ? (c.policy ?? { bits: new Array(L).fill(Math.round(c.avgBits)), sparsity: new Array(L).fill(c.targetSparsity) })
      : null;
    const first = makePlan(planInput(budgetPolicy), dev);
    if (!first.fits) throw new PlanNotFeasibleError(first);
  }
  const tLoad = performance.now();
  // A 16-bit model about to be compressed leaves its layers in the file: LUC reads each when it reaches it,
  // so the whole model is never in memory at once (peak: the packed layers plus one layer in 16 bits).
  const model = LlamaModel.load(o.modelDir, o.compression && (dtype === 'BF16' || dtype === 'F16') ? { weights: 'lazy' } : {});
  const loadMs = performance.now() - tLoad;
  log(
    `model ${resolve(o.modelDir)}: ${model.config.numHiddenLayers} layers, ${(model.paramCount() / 1e6).toFixed(2)} M params (${(model.storedBytes() / 2 ** 20).toFixed(0)} MiB outside the TF.js heap) loaded in ${(loadMs / 1000).toFixed(1)} s; ${train.examples.length} train / ${val?.examples.length ?? 0} validation examples`,
  );
  mkdirSync(o.outDir, { recursive: true });
  const ragManifest = rag ? { rag: saveRagIndex(o.outDir, rag) } : {};
  if (none) {
    const validation = val?.examples.length
      ? evaluatePaths(model, [plainPath(model)], val.examples, { batchSize: o.evalBatchSize ?? 16, padId })
      : null;
    savePlainManifest(o.outDir, model, null, {
      mode: 'none',
      base_model: resolve(o.modelDir),
      validation: validation ?? undefined,
      max_length: maxLength,
      ...ragManifest,
    });
    return finishUntuned(o, model, { t0, loadMs, validation, trainExamples: train.examples.length });
  }
  let compression: TuneJobReport['compression'] = null;
  if (o.compression) {
    const c = o.compression;
    const calib = calibrationFromExamples(train.examples, c.calibrationSequences ?? 8, c.calibrationTokens ?? 128, resolve(o.trainFile));
    let sensitivity: SensitivityReport | null = null;
    let policy = c.policy;
    if (!policy) {
      sensitivity = profileSensitivity(model, calib, { method: c.method, groupSize: c.groupSize });
      policy = buildPolicy(sensitivity, c);
      log(
        `LUC: profiled ${model.layers.length} layers in ${(sensitivity.ms / 1000).toFixed(1)} s; sparsity [${policy.sparsity.map((x) => x.toFixed(2)).join(', ')}], bits [${policy.bits.join(', ')}]`,
      );
    }
    policy = (await c.onPolicy?.(policy, sensitivity)) ?? policy;
    const report = compressModel(model, calib, policy, { method: c.method, groupSize: c.groupSize, activationBits: c.activationBits });
    log(
      `LUC: frozen linear weights ${(report.denseBytes / 2 ** 20).toFixed(1)} MiB -> ${(report.storedBytes / 2 ** 20).toFixed(1)} MiB in ${(report.ms / 1000).toFixed(1)} s`,
    );
    compression = { policy, report, sensitivity };
  }
  let plan: Plan | null = null;
  if (dev) {
    plan = makePlan(planInput(compression?.policy ?? null), dev);
    if (!plan.fits) throw new PlanNotFeasibleError(plan);
    opts.microBatch = plan.microBatch;
    opts.gradAccum = plan.gradAccum;
    if (opts.mode === 'edge_llm') opts.exitLayers = plan.exitLayers;
    opts.prefixCache = plan.prefixCache;
    opts.measureMemory = opts.measureMemory ?? 10;
    log(
      `plan: exits [${plan.exitLayers}], micro-batch ${plan.microBatch} x ${plan.gradAccum}, prefix cache ${plan.prefixCache}; forecast ${(plan.forecast.peakTfBytes / 2 ** 20).toFixed(0)} MiB TF.js peak, ${plan.forecast.stepMs.toFixed(0)} ms/step`,
    );
  }
  const trainer = new AdaptiveTrainer(model, train.examples, opts, padId);
  const ckptDir = join(o.outDir, 'checkpoint');
  const monitor = new ValidationMonitor(trainer, {
    examples: val?.examples ?? [],
    evalEvery,
    earlyStopping: o.earlyStopping,
    timeBudgetMs: o.timeBudgetMs,
    batchSize: o.evalBatchSize ?? 16,
    padId,
    onEval: o.onEval,
  });
  if (o.resume && hasTrainerCheckpoint(ckptDir)) {
    const callbacks = loadTrainerCheckpoint(trainer, ckptDir);
    if (callbacks.ValidationMonitor) monitor.loadStateDict(callbacks.ValidationMonitor);
    log(`resumed from ${ckptDir} at step ${trainer.state.step}`);
  }
  let last: StepReport | null = null;
  let stoppedBy: StopReason = 'max_steps';
  while (!trainer.done) {
    if (o.signal?.aborted) {
      const e = new Error('tuning aborted');
      e.name = 'AbortError';
      throw e;
    }
    last = await trainer.step();
    await o.onStep?.(last);
    const stop = await monitor.afterStep();
    const every = o.checkpointEvery ?? 0;
    if ((every && (trainer.state.step % every === 0 || trainer.done)) || o.shouldCheckpoint?.(trainer.state.step)) {
      saveTrainerCheckpoint(trainer, ckptDir, { ValidationMonitor: monitor.stateDict() });
      await o.onCheckpoint?.(trainer.state.step, ckptDir);
    }
    if (stop) {
      stoppedBy = stop;
      log(`stopped by ${stop.replace('_', ' ')} at step ${trainer.state.step} of ${opts.steps}`);
      break;
    }
  }
  // Best-on-validation weights (HF load_best_model_at_end) before the final evaluation and saving.
  const bestStep = monitor.restoreBest();
  if (bestStep !== null && bestStep !== trainer.state.step) log(`restored the best validation point's weights (step ${bestStep})`);
  const trainMs = trainer.state.elapsedMs;
  const stepMsMeasured = trainMs / Math.max(1, trainer.state.step);
  materializeHeads(trainer.exits); // low-rank heads -> dense: training is over
  const paths = trainerPaths(trainer);
  let validation: EvalReport | null = null;
  let votingRule: VotingRule | null = null;
  if (val?.examples.length) {
    validation = evaluatePaths(model, paths, val.examples, { batchSize: o.evalBatchSize ?? 16, padId });
    votingRule = chooseRule(validation);
  }
  if (opts.mode === 'vanilla') {
    savePeftAdapter(o.outDir, opts.lora, trainer.loraLinears, new Map(), { base_model_name_or_path: resolve(o.modelDir) });
    savePlainManifest(o.outDir, model, opts.lora, {
      mode: 'vanilla',
      base_model: resolve(o.modelDir),
      validation: validation ?? undefined,
      max_length: maxLength,
      ...ragManifest,
    });
  } else {
    saveEdgeAdapter(o.outDir, model, trainer.exits, trainer.loraLinears, opts.lora, {
      voting_rule: votingRule ?? 'mean',
      prefix: opts.prefix ?? 'backbone',
      exit_weights: validation?.exitWeights,
      base_model: resolve(o.modelDir),
      validation: validation ?? undefined,
      max_length: maxLength,
      ...ragManifest,
      compression: compression
        ? {
            policy: compression.policy,
            method: o.compression?.method ?? 'wanda',
            group_size: o.compression?.groupSize ?? 0,
            stored_bytes: compression.report.storedBytes,
            dense_bytes: compression.report.denseBytes,
          }
        : null,
    });
  }
  const report: TuneJobReport = {
    mode: opts.mode,
    steps: trainer.state.step,
    trainExamples: train.examples.length,
    validationExamples: val?.examples.length ?? 0,
    wallMs: performance.now() - t0,
    trainMs,
    tokens: trainer.state.tokens,
    tokensPerSec: trainer.state.tokens / Math.max(1e-9, trainMs / 1000),
    flops: trainer.state.flops ?? 0,
    gflopsPerSec: (trainer.state.flops ?? 0) / 1e9 / Math.max(1e-9, trainMs / 1000),
    peakRssBytes: trainer.peakRss,
    loadMs,
    storedWeightBytes: model.storedBytes(),
    finalLoss: last?.loss ?? NaN,
    votingRule,
    validation,
    validationCurve: monitor.curve,
    bestStep,
    stoppedBy,
    outDir: resolve(o.outDir),
    compression,
    plan: plan
      ? {
          plan,
          measured: { peakTfBytes: trainer.peakTf, peakRssBytes: trainer.peakRss, stepMs: stepMsMeasured },
          error: {
            peakTfBytes: plan.forecast.peakTfBytes / Math.max(1, trainer.peakTf) - 1,
            stepMs: plan.forecast.stepMs / stepMsMeasured - 1,
          },
        }
      : null,
  };
  writeJson(join(o.outDir, 'metrics.json'), report);
  trainer.optimizer.dispose();
  model.dispose();
  tf.disposeVariables();
  return report;
}

/** The report of a job that trained nothing (`mode: 'none'`), written as `metrics.json`; frees the model. */
function finishUntuned(
  o: TuneJobOptions,
  model: LlamaModel,
  r: { t0: number; loadMs: number; validation: EvalReport | null; trainExamples: number },
): TuneJobReport {
  const report: TuneJobReport = {
    mode: 'none',
    steps: 0,
    trainExamples: r.trainExamples,
    validationExamples: r.validation?.examples ?? 0,
    wallMs: performance.now() - r.t0,
    trainMs: 0,
    tokens: 0,
    tokensPerSec: 0,
    flops: 0,
    gflopsPerSec: 0,
    peakRssBytes: process.memoryUsage().rss,
    loadMs: r.loadMs,
    storedWeightBytes: model.storedBytes(),
    finalLoss: Number.NaN,
    votingRule: null,
    validation: r.validation,
    validationCurve: [],
    bestStep: null,
    stoppedBy: 'max_steps',
    outDir: resolve(o.outDir),
    compression: null,
    plan: null,
  };
  writeJson(join(o.outDir, 'metrics.json'), report);
  model.dispose();
  tf.disposeVariables();
  return report;
}
