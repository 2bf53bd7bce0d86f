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
import { pathsOf, plainPath, saveEdgeAdapter, writeJson } from './artifacts.js';
import { materializeHeads } from './exits.js';
import type { VotingRule } from '../infer/voting.js';
import {
  loadLlamaConfig,
  plan as makePlan,
  plannerStoredDtype,
  readWeightIndex,
  storedDtype,
  tensorHeapCeilingOf,
  type DeviceProfile,
  type Plan,
  type PlanInput,
} from '@edgetune/core';
import { measureStepFactor } from '../schedule/speed.js';
import { backendInfo, plannerSgemmPeak } from '../backend/index.js';
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
  tune?: Partial<Omit<TuneOptions, 'lora'>> & { lora?: Partial<LoraConfig> };
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
  onCheckpoint?: (step: number, dir: string) => void | Promise<void>;
  /** aborts between steps (cancel); the run throws an AbortError-named Error */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** What {@link runTuning} returns and writes as `metrics.json`. Units: ms, bytes, tokens. */
export interface TuneJobReport {
  mode: TuneOptions['mode'];
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

/** Reads and tokenizes a JSONL file. @throws DatasetError naming the bad line. */
export async function loadExamples(
  file: string,
  tok: EngineTokenizer,
  maxLength: number,
): Promise<{ records: TrainingRecord[]; examples: Example[] }> {
  const records = await readJsonlFile(file);
  return { records, examples: records.map((r) => encodeRecord(tok, r, { maxLength })) };
}

/** Full options with defaults filled in. */
export function resolveTuneOptions(o: TuneJobOptions['tune'] = {}): TuneOptions {
  const { lora, ...rest } = o;
  return { ...DEFAULT_TUNE, ...rest, lora: { ...DEFAULT_LORA, ...lora } } as TuneOptions;
}

/**
 * Runs a tuning job. Writes `<outDir>/edge_llm.json`, `edge_llm.safetensors`, `peft/`, `metrics.json`
 * (vanilla: a PEFT adapter, `adapter_config.json` + `adapter_model.safetensors`, and `metrics.json`).
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
  const tok = await loadTokenizer(o.modelDir);
  const config = loadLlamaConfig(o.modelDir);
  const dtype = storedDtype(readWeightIndex(o.modelDir)); // from the safetensors headers: how the weights are stored
  const padId = tok.padId ?? tok.eosId ?? 0;
  const train = await loadExamples(o.trainFile, tok, maxLength);
  const val = o.validationFile ? await loadExamples(o.validationFile, tok, maxLength) : null;
  // The plan comes before the weights are read: a job the device cannot hold is refused with the figures,
  // not aborted half-way through loading. Before compression the policy is the budget's uniform bits.
  const dev = o.device ? await measuredDevice(o.device === true ? {} : o.device, log) : null;
  const lens = train.examples.map((e) => e.inputIds.length).sort((a, b) => a - b);
  const scored = train.examples.map((e) => scoredPositions(e.labels)).sort((a, b) => a - b); // 90th percentile below
  const planInput = (policy: PlanInput['policy']): PlanInput => ({
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
    trainExamples: train.examples.length,
    policy,
    groupSize: o.compression?.groupSize,
    labelledPerExample: scored[Math.floor(scored.length * 0.9)],
  });
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
  if (o.resume && hasTrainerCheckpoint(ckptDir)) {
    loadTrainerCheckpoint(trainer, ckptDir);
    log(`resumed from ${ckptDir} at step ${trainer.state.step}`);
  }
  let last: StepReport | null = null;
  while (!trainer.done) {
    if (o.signal?.aborted) {
      const e = new Error('tuning aborted');
      e.name = 'AbortError';
      throw e;
    }
    last = await trainer.step();
    await o.onStep?.(last);
    const every = o.checkpointEvery ?? 0;
    if ((every && (trainer.state.step % every === 0 || trainer.done)) || o.shouldCheckpoint?.(trainer.state.step)) {
      saveTrainerCheckpoint(trainer, ckptDir);
      await o.onCheckpoint?.(trainer.state.step, ckptDir);
    }
  }
  const trainMs = trainer.state.elapsedMs;
  const stepMsMeasured = trainMs / Math.max(1, trainer.state.step);
  materializeHeads(trainer.exits); // low-rank heads -> dense: training is over
  const paths = opts.mode === 'vanilla' ? [plainPath(model)] : pathsOf(trainer.exits, opts.prefix);
  let validation: EvalReport | null = null;
  let votingRule: VotingRule | null = null;
  if (val?.examples.length) {
    validation = evaluatePaths(model, paths, val.examples, { batchSize: o.evalBatchSize ?? 16, padId });
    votingRule = chooseRule(validation);
  }
  if (opts.mode === 'vanilla') {
    savePeftAdapter(o.outDir, opts.lora, trainer.loraLinears, new Map(), { base_model_name_or_path: resolve(o.modelDir) });
  } else {
    saveEdgeAdapter(o.outDir, model, trainer.exits, trainer.loraLinears, opts.lora, {
      voting_rule: votingRule ?? 'mean',
      prefix: opts.prefix ?? 'backbone',
      exit_weights: validation?.exitWeights,
      base_model: resolve(o.modelDir),
      validation: validation ?? undefined,
      max_length: maxLength,
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
