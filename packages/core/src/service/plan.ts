/**
 * Execution plans on the service side. The API plans every job at creation with the engine's planner
 * (`@edgetune/engine/schedule`: pure arithmetic, no TF.js) to answer dry runs and to refuse jobs that
 * cannot fit their memory budget before they are queued; the worker replaces that plan with the one the
 * engine followed and what it measured. Both are stored on the job as a {@link JobPlan} (snake_case).
 */
import { availableParallelism, freemem } from 'node:os';
import {
  plan as makePlan,
  plannerStoredDtype,
  type DeviceProfile,
  type Plan,
  type PlanInput,
  type StoredDtype,
} from '../schedule/planner.js';
import { formatDuration } from '../progress.js';
import { DEFAULT_DEVICE_GFLOPS, type Config } from './config.js';
import { tuneModeOf, type Compression, type JobDevice, type ResolvedJobConfig } from './jobconfig.js';
import type { WorkerRecord } from './workers.js';

/** What the planner forecasts. Bytes, milliseconds, FLOPs. */
export interface PlanForecast {
  peak_rss_bytes: number;
  peak_tf_bytes: number;
  weight_bytes: number;
  trainable_bytes: number;
  activation_bytes: number;
  prefix_cache_bytes: number;
  /** one optimizer step (method `rag`: one forward pass of a batch) */
  step_ms: number;
  /** step_ms x total steps, bounded by the time budget when there is one (0 for `rag`) */
  total_ms: number;
  flops_per_step: number;
}

/**
 * A time budget against the forecast: `steps` optimizer steps fit in `seconds` at the forecast step time
 * (in-loop evaluations, which the budget also counts, are not forecast: fewer steps may run); `stops_run`: the
 * budget ends training before its last step.
 */
export interface PlanTimeBudget {
  seconds: number;
  steps: number;
  stops_run: boolean;
}

/** A job's plan: its choices, the device it was made for, its forecast, and (after the run) the measurements. */
export interface JobPlan {
  /** `api`: made at creation (sequence length = max_length); `worker`: the plan the worker followed */
  source: 'api' | 'worker';
  fits: boolean;
  reason: string | null;
  exit_layers: number[];
  window_depth: number;
  micro_batch: number;
  gradient_accumulation_steps: number;
  prefix_cache: boolean;
  /** per layer weight storage: f32 | int8 | int4 */
  storage: string[];
  /** dtype the frozen weights are stored in, as the forecast assumed (F16/BF16: outside the TF.js heap) */
  stored_dtype: StoredDtype;
  /**
   * the device planned for; `source`: where the fields the job did not state came from (`worker`: a live
   * worker's report, `worker_id`; `config`: EDGETUNE_DEVICE_*; `api_host`: the API host's free memory and
   * cores with DEFAULT_DEVICE_GFLOPS, when no worker is live)
   */
  device: {
    memory_budget_bytes: number;
    threads: number;
    backend: string;
    matmul_gflops: number;
    step_time_factor: number;
    /** the backend's hard limit on TF.js tensor memory (wasm: 4294901760); null: none */
    tensor_heap_ceiling_bytes: number | null;
    source: DeviceSource;
    worker_id: string | null;
  };
  /** the per-layer bits the forecast assumed: a stored policy's, an estimate from the budget, or the run's own */
  policy: { id: string | null; source: 'stored' | 'estimated' | 'run' } | null;
  forecast: PlanForecast;
  measured: { peak_rss_bytes: number; peak_tf_bytes: number; step_ms: number } | null;
  /** forecast / measured - 1 */
  error: { peak_rss_bytes: number | null; peak_tf_bytes: number | null; step_ms: number | null } | null;
  /** the job's time budget against the forecast (null: none; absent in plans made before budgets existed) */
  time_budget?: PlanTimeBudget | null;
  /** the API's forecast at creation, kept when the worker's plan replaces it */
  admission: { fits: boolean; peak_rss_bytes: number; step_ms: number; total_ms: number; memory_budget_bytes: number } | null;
}

const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const finiteOrNull = (x: number) => (Number.isFinite(x) ? round(x, 4) : null);

/** Where a plan's device profile came from (see JobPlan.device). */
export type DeviceSource = 'worker' | 'config' | 'api_host';

/**
 * The device a job is planned for on the API: the job's own fields, else the live worker's report
 * (planningWorker), else the configured defaults (EDGETUNE_DEVICE_*), else the API host's free memory and
 * cores with DEFAULT_DEVICE_GFLOPS. The worker's measured step-time factor comes with its SGEMM reading.
 */
export function apiDevice(
  config: Pick<Config, 'deviceMemoryBytes' | 'deviceThreads' | 'deviceGflops'>,
  requested: JobDevice | null,
  worker: WorkerRecord | null = null,
): { device: DeviceProfile; source: DeviceSource; workerId: string | null } {
  const source: DeviceSource = worker
    ? 'worker'
    : config.deviceMemoryBytes != null || config.deviceThreads != null || config.deviceGflops != null
      ? 'config'
      : 'api_host';
  return {
    device: {
      memoryBudgetBytes: requested?.memory_budget_bytes ?? worker?.memoryBudgetBytes ?? config.deviceMemoryBytes ?? freemem(),
      threads: requested?.threads ?? worker?.threads ?? config.deviceThreads ?? availableParallelism(),
      backend: worker?.backend ?? 'auto',
      matmulGflops: worker?.matmulGflops ?? config.deviceGflops ?? DEFAULT_DEVICE_GFLOPS,
      // with the worker's own SGEMM reading, which the line above takes whenever a worker is live
      ...(worker?.stepTimeFactor != null ? { stepTimeFactor: worker.stepTimeFactor } : {}),
      // the worker's backend limits its tensors whatever memory budget the job states
      ...(worker?.tensorHeapCeilingBytes != null ? { tensorHeapCeilingBytes: worker.tensorHeapCeilingBytes } : {}),
    },
    source,
    workerId: worker?.id ?? null,
  };
}

/**
 * Per-layer bits and sparsity standing in for a policy not profiled yet. Only the storage format matters
 * to the forecast (bits <= 4: int4, else int8, 16: float): `uniform` gives every layer avg_bits; `budgeted`
 * spends the bits above 4 on a share (avg_bits - 4) / 4 of the layers at 8 bits; `mean` (4 or 8 bits by
 * sensitivity) assumes half the layers at 8.
 */
export function estimatedPolicy(layers: number, c: Compression): { bits: number[]; sparsity: number[] } {
  let high: number;
  if (c.bits_rule === 'uniform') return { bits: new Array(layers).fill(c.avg_bits), sparsity: new Array(layers).fill(c.target_sparsity) };
  if (c.bits_rule === 'mean') high = Math.ceil(layers / 2);
  else high = Math.round(layers * Math.min(1, Math.max(0, (c.avg_bits - 4) / 4)));
  const low = Math.max(2, Math.min(4, Math.floor(c.avg_bits)));
  return { bits: Array.from({ length: layers }, (_, i) => (i < high ? 8 : low)), sparsity: new Array(layers).fill(c.target_sparsity) };
}

/**
 * The planner's input for a resolved job (sequence length = max_length: the forecast is an upper bound);
 * `storedDtype`: the dtype of the model's stored weights (ModelSummary.storedDtype; null or absent: F32).
 * The method picks the planner's mode (tuneModeOf: lora types plan as `vanilla`, `rag` as `none` with 0 steps);
 * methods without `method.edge_llm` plan the defaults of its fields (one exit at the last layer).
 */
export function planInputOf(
  model: PlanInput['model'],
  cfg: Pick<ResolvedJobConfig, 'method' | 'hyperparameters' | 'totalSteps'>,
  trainRecords: number,
  policy: { bits: number[]; sparsity: number[] } | null,
  storedDtype: string | null = null,
): PlanInput {
  const hp = cfg.hyperparameters;
  const el = cfg.method.edge_llm;
  const mode = tuneModeOf(cfg.method.type);
  return {
    model,
    storedDtype: plannerStoredDtype(storedDtype),
    mode,
    ...(el ? { exitLayers: el.exit_layers } : {}),
    loraR: hp.lora_r,
    loraTargets: hp.target_modules,
    headRank: el?.head_rank ?? 0,
    prefix: el?.prefix ?? 'backbone',
    schedule: el?.schedule ?? 'sequential',
    batchSize: hp.batch_size * hp.gradient_accumulation_steps,
    seqLen: hp.max_length,
    steps: cfg.totalSteps,
    trainExamples: trainRecords,
    policy,
    groupSize: el?.compression?.group_size,
  };
}

/** The engine's plan as a {@link JobPlan}. */
export function jobPlanOf(
  p: Plan,
  source: JobPlan['source'],
  extra: {
    policy?: JobPlan['policy'];
    measured?: { peakRssBytes: number; peakTfBytes: number; stepMs: number } | null;
    admission?: JobPlan['admission'];
    deviceSource?: { source: DeviceSource; workerId: string | null };
  } = {},
): JobPlan {
  const f = p.forecast,
    m = extra.measured ?? null;
  const rel = (forecast: number, measured: number) => (measured > 0 ? finiteOrNull(forecast / measured - 1) : null);
  return {
    source,
    fits: p.fits,
    reason: p.reason ?? null,
    exit_layers: p.exitLayers,
    window_depth: p.windowDepth,
    micro_batch: p.microBatch,
    gradient_accumulation_steps: p.gradAccum,
    prefix_cache: p.prefixCache,
    storage: p.storage,
    stored_dtype: p.storedDtype ?? 'F32',
    device: {
      memory_budget_bytes: Math.round(p.device.memoryBudgetBytes),
      threads: p.device.threads,
      backend: p.device.backend,
      matmul_gflops: round(p.device.matmulGflops, 2),
      step_time_factor: round(p.device.stepTimeFactor ?? 1, 3),
      tensor_heap_ceiling_bytes: p.device.tensorHeapCeilingBytes ?? null,
      source: extra.deviceSource?.source ?? 'api_host',
      worker_id: extra.deviceSource?.workerId ?? null,
    },
    policy: extra.policy ?? null,
    forecast: {
      peak_rss_bytes: Math.round(f.peakRssBytes),
      peak_tf_bytes: Math.round(f.peakTfBytes),
      weight_bytes: Math.round(f.weightBytes),
      trainable_bytes: Math.round(f.trainableBytes),
      activation_bytes: Math.round(f.activationBytes),
      prefix_cache_bytes: Math.round(f.prefixCacheBytes),
      step_ms: round(f.stepMs, 2),
      total_ms: Math.round(f.totalMs),
      flops_per_step: Math.round(f.flopsPerStep),
    },
    measured: m
      ? { peak_rss_bytes: Math.round(m.peakRssBytes), peak_tf_bytes: Math.round(m.peakTfBytes), step_ms: round(m.stepMs, 2) }
      : null,
    error: m
      ? {
          peak_rss_bytes: rel(f.peakRssBytes, m.peakRssBytes),
          peak_tf_bytes: rel(f.peakTfBytes, m.peakTfBytes),
          step_ms: rel(f.stepMs, m.stepMs),
        }
      : null,
    time_budget: null,
    admission: extra.admission ?? null,
  };
}

/**
 * Bounds a plan's forecast by a time budget (`seconds`; null: the plan as it is, `time_budget` null): the
 * steps that fit at the forecast step time, whether the budget stops the run before `totalSteps`, and
 * `forecast.total_ms` at most the budget.
 */
export function withTimeBudget(p: JobPlan, seconds: number | null, totalSteps: number): JobPlan {
  if (seconds === null) return { ...p, time_budget: null };
  const ms = seconds * 1000;
  const steps = p.forecast.step_ms > 0 ? Math.min(totalSteps, Math.floor(ms / p.forecast.step_ms)) : totalSteps;
  return {
    ...p,
    forecast: { ...p.forecast, total_ms: Math.min(p.forecast.total_ms, Math.round(ms)) },
    time_budget: { seconds, steps, stops_run: steps < totalSteps },
  };
}

/** The compact admission record kept from the API's plan. */
export function admissionOf(p: JobPlan | null): JobPlan['admission'] {
  if (!p) return null;
  if (p.source !== 'api') return p.admission;
  return {
    fits: p.fits,
    peak_rss_bytes: p.forecast.peak_rss_bytes,
    step_ms: p.forecast.step_ms,
    total_ms: p.forecast.total_ms,
    memory_budget_bytes: p.device.memory_budget_bytes,
  };
}

/**
 * Plans a job on the API side (its time budget, when set, bounds the forecast: {@link withTimeBudget}), for `worker`'s device when one is live (apiDevice: its memory budget and
 * its backend's heap ceiling), with the model's weights at `storedDtype` (the safetensors dtype its hosts
 * reported; null: F32).
 * @throws PlanError (engine) for an input the planner cannot evaluate.
 */
export function planJob(
  model: PlanInput['model'],
  cfg: Pick<ResolvedJobConfig, 'method' | 'hyperparameters' | 'totalSteps' | 'device'>,
  trainRecords: number,
  config: Pick<Config, 'deviceMemoryBytes' | 'deviceThreads' | 'deviceGflops'>,
  stored: { id: string; bits: number[]; sparsity: number[] } | null,
  worker: WorkerRecord | null = null,
  storedDtype: string | null = null,
): JobPlan {
  const c = cfg.method.edge_llm?.compression ?? null;
  const L = model.numHiddenLayers;
  let policy: { bits: number[]; sparsity: number[] } | null = null;
  let ref: JobPlan['policy'] = null;
  if (c && stored && stored.bits.length === L && stored.sparsity.length === L) {
    policy = { bits: stored.bits, sparsity: stored.sparsity };
    ref = { id: stored.id, source: 'stored' };
  } else if (c) {
    policy = estimatedPolicy(L, c);
    ref = { id: null, source: 'estimated' };
  }
  const dev = apiDevice(config, cfg.device, worker);
  const p = makePlan(planInputOf(model, cfg, trainRecords, policy, storedDtype), dev.device);
  return withTimeBudget(jobPlanOf(p, 'api', { policy: ref, deviceSource: dev }), cfg.hyperparameters.time_budget_s ?? null, cfg.totalSteps);
}

/** Per-layer storage formats as runs: `["f32","f32","int4"]` -> `layers 0-1 f32, 2 int4`. */
function storageRuns(storage: readonly string[]): string {
  const runs: string[] = [];
  for (let i = 0; i < storage.length; ) {
    let j = i;
    while (j + 1 < storage.length && storage[j + 1] === storage[i]) j++;
    runs.push(`${i === j ? i : `${i}-${j}`} ${storage[i]}`);
    i = j + 1;
  }
  return runs.length ? `layers ${runs.join(', ')}` : 'no layers';
}

/**
 * A plan as a person reads it, one aspect a line: whether it fits (and if not, the planner's reason), the
 * memory forecast against the budget (MiB), the time (ms per step, total), exits and windows, the
 * micro-batch, per-layer weight storage (as runs of layers) and the device planned for.
 */
export function formatPlan(p: JobPlan): string {
  const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;
  const f = p.forecast,
    d = p.device;
  const share = d.memory_budget_bytes > 0 ? ` (${Math.round((100 * f.peak_rss_bytes) / d.memory_budget_bytes)} %)` : '';
  const ceiling = d.tensor_heap_ceiling_bytes === null ? '' : ` (the ${d.backend} backend's ceiling: ${mib(d.tensor_heap_ceiling_bytes)})`;
  const tb = p.time_budget;
  const lines = [
    p.fits ? 'fits:    yes' : `fits:    NO: ${p.reason ?? 'over budget'}`,
    `memory:  peak RSS ${mib(f.peak_rss_bytes)} of a ${mib(d.memory_budget_bytes)} budget${share}; TF.js tensors ${mib(f.peak_tf_bytes)}${ceiling}`,
    `         weights ${mib(f.weight_bytes)} (stored ${p.stored_dtype}), trainable ${mib(f.trainable_bytes)}, activations ${mib(f.activation_bytes)}, prefix cache ${mib(f.prefix_cache_bytes)}`,
    `time:    ${f.step_ms.toFixed(0)} ms/step, ${formatDuration(f.total_ms)} in all` +
      (tb
        ? tb.stops_run
          ? ` (the ${tb.seconds} s time budget stops it after about ${tb.steps} steps)`
          : ` (within the ${tb.seconds} s time budget)`
        : ''),
    `exits:   layers ${p.exit_layers.join(', ')}; deepest window ${p.window_depth} layer${p.window_depth === 1 ? '' : 's'}; micro-batch ${p.micro_batch} x ${p.gradient_accumulation_steps} accumulation; prefix cache ${p.prefix_cache ? 'on' : 'off'}`,
    `storage: ${storageRuns(p.storage)}`,
    `device:  ${d.backend}, ${d.threads} threads, SGEMM ${d.matmul_gflops} GFLOP/s, step-time factor ${d.step_time_factor}`,
  ];
  return lines.join('\n');
}

/** One line for events and logs: choices and forecast against the budget. */
export function describePlan(p: JobPlan): string {
  const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;
  return (
    `exits [${p.exit_layers.join(', ')}], micro-batch ${p.micro_batch} x ${p.gradient_accumulation_steps}, prefix cache ${p.prefix_cache ? 'on' : 'off'}; ` +
    `forecast ${mib(p.forecast.peak_rss_bytes)} peak of a ${mib(p.device.memory_budget_bytes)} budget, ${Math.round(p.forecast.step_ms)} ms/step, ${Math.round(p.forecast.total_ms / 1000)} s in all` +
    (p.time_budget?.stops_run ? ` (the ${p.time_budget.seconds} s time budget stops it after about ${p.time_budget.steps} steps)` : '')
  );
}
