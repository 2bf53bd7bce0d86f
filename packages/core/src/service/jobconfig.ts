/**
 * Resolution of a create-job request into the numbers the worker runs: "auto" values and defaults are
 * filled in from the base model and the training file, checked against the model's limits, and echoed
 * back in the job object (as OpenAI echoes resolved hyperparameters).
 */
import { defaultExitLayers } from '../exits.js';
import { LINEAR_NAMES } from '../names.js';
import { limitsOf, type ModelLimits } from './models.js';
import { randomInt } from 'node:crypto';

/** Pruning methods, sparsity rules and bit rules of LUC (the engine's names). */
export const PRUNE_METHODS = ['wanda', 'sparsegpt'] as const;
export const SPARSITY_RULES = ['inverse', 'owl', 'uniform'] as const;
export const BITS_RULES = ['budgeted', 'mean', 'uniform'] as const;
/** Bit-widths the quantizer stores (16 = left in float): what `bits_rule: "uniform"` can give every layer. */
export const WEIGHT_BITS = [2, 3, 4, 8, 16] as const;

/** `method.edge_llm.compression` as a client sends it: the LUC budget. */
export interface CompressionInput {
  target_sparsity: number;
  avg_bits: number;
  method?: (typeof PRUNE_METHODS)[number];
  sparsity_rule?: (typeof SPARSITY_RULES)[number];
  bits_rule?: (typeof BITS_RULES)[number];
  group_size?: number;
}

/** The resolved budget (every field set): with the base model, the key of a stored policy. */
export interface Compression {
  target_sparsity: number;
  avg_bits: number;
  method: (typeof PRUNE_METHODS)[number];
  sparsity_rule: (typeof SPARSITY_RULES)[number];
  bits_rule: (typeof BITS_RULES)[number];
  group_size: number;
}

/** `device` as a client sends it (absent fields: the worker's own). */
export interface DeviceInput {
  memory_budget_bytes?: number;
  threads?: number;
}

/** The device a job asked for, as stored and echoed (null fields: the worker's own). */
export interface JobDevice {
  memory_budget_bytes: number | null;
  threads: number | null;
}

/**
 * Tuning methods: `edge_llm` (Edge-LLM adaptive layer tuning with exits and voting, optionally on a LUC-compressed
 * model), `lora` (LoRA on every layer, loss at lm_head: the engine's `vanilla` mode), `rag` (no training: the base
 * model answers with the top-k training examples a BM25 index retrieves put before each prompt), and `rag_edge_llm`
 * / `rag_lora` (the tuning method trained and evaluated on prompts augmented the same way, as OPPU does: Tan et
 * al. 2024, with LaMP's retrieval: Salemi et al. 2023).
 */
export const METHOD_TYPES = ['edge_llm', 'lora', 'rag', 'rag_edge_llm', 'rag_lora'] as const;
export type MethodType = (typeof METHOD_TYPES)[number];

/** The engine's tuning mode of a method (`none`: no training, base model + retrieval index). */
export type MethodTuneMode = 'edge_llm' | 'vanilla' | 'none';

/** Whether a method uses Edge-LLM's exits, windows and LUC (`method.edge_llm` applies). */
export const isEdgeLlmMethod = (t: MethodType): boolean => t === 'edge_llm' || t === 'rag_edge_llm';
/** Whether a method retrieves training examples into each prompt (`method.rag` applies). */
export const isRagMethod = (t: MethodType): boolean => t === 'rag' || t === 'rag_edge_llm' || t === 'rag_lora';

/** The engine's `tune.mode` of a method: edge_llm types -> `edge_llm`, lora types -> `vanilla`, `rag` -> `none`. */
export function tuneModeOf(t: MethodType): MethodTuneMode {
  return isEdgeLlmMethod(t) ? 'edge_llm' : t === 'rag' ? 'none' : 'vanilla';
}

/**
 * Retrieval defaults: examples retrieved per prompt, and the share of max_length they may take (LaMP keeps the
 * input within its budget: retrieved text is cut first, the prompt itself never).
 */
export const RAG_DEFAULTS = { k: 2, context_share: 0.6 } as const;
/** Most examples retrieved per prompt. */
export const MAX_RAG_K = 16;
/** Largest `hyperparameters.time_budget_s`: 7 days, seconds. */
export const MAX_TIME_BUDGET_S = 7 * 24 * 3600;
/** In-loop evaluations an `eval_steps: "auto"` run makes (HF Trainer's `eval_steps` counts steps between them). */
export const AUTO_EVALUATIONS = 20;

/** `method.edge_llm` as a client sends it. */
export interface EdgeLlmMethodInput {
  exit_layers?: 'auto' | number[];
  schedule?: 'sequential' | 'round_robin' | 'random';
  train_heads?: boolean;
  head_rank?: number;
  prefix?: 'backbone' | 'adapted';
  voting?: 'auto';
  compression?: CompressionInput | null;
}

/** `method` as a client sends it. */
export interface MethodInput {
  type: MethodType;
  /** edge_llm and rag_edge_llm only */
  edge_llm?: EdgeLlmMethodInput;
  /** rag types only */
  rag?: { k?: number; context_share?: number };
}

/** `hyperparameters` as a client sends them (OpenAI names plus ours). */
export interface HyperparametersInput {
  n_epochs?: 'auto' | number;
  batch_size?: 'auto' | number;
  learning_rate_multiplier?: 'auto' | number;
  learning_rate?: number;
  max_steps?: number;
  gradient_accumulation_steps?: number;
  warmup_steps?: 'auto' | number;
  lr_scheduler?: 'cosine' | 'linear' | 'constant';
  weight_decay?: number;
  max_grad_norm?: number;
  lora_r?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  target_modules?: 'all-linear' | string[];
  max_length?: number;
  /** seconds of tuning wall time (steps + in-loop evaluations) after which training stops */
  time_budget_s?: number;
  /** stop after `patience` evaluations without an improvement of at least `min_delta` (needs a validation file) */
  early_stopping?: { patience: number; min_delta?: number };
  /** optimizer steps between in-loop validation evaluations */
  eval_steps?: 'auto' | number;
}

/** Resolved `method.edge_llm`. `prefix` and `head_rank` are absent in jobs stored before they existed. */
export interface EdgeLlmMethod {
  exit_layers: number[];
  schedule: 'sequential' | 'round_robin' | 'random';
  train_heads: boolean;
  head_rank: number;
  prefix?: 'backbone' | 'adapted';
  voting: 'auto';
  compression: Compression | null;
}

/** Resolved `method.rag`: examples retrieved per prompt, share of max_length they may take. */
export interface RagMethod {
  k: number;
  context_share: number;
}

/** Resolved method: `edge_llm` set for the edge_llm types, `rag` for the rag types (absent otherwise). */
export interface Method {
  type: MethodType;
  edge_llm?: EdgeLlmMethod;
  rag?: RagMethod;
}

/** Resolved hyperparameters (every value a number or list). */
export interface Hyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
  learning_rate: number;
  max_steps: number | null;
  gradient_accumulation_steps: number;
  warmup_steps: number;
  lr_scheduler: 'cosine' | 'linear' | 'constant';
  weight_decay: number;
  max_grad_norm: number;
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  max_length: number;
  /** null: no budget. Optional: absent in jobs stored before it existed (read as null). */
  time_budget_s?: number | null;
  /** null: train to the last step */
  early_stopping?: { patience: number; min_delta: number } | null;
  /** optimizer steps between in-loop evaluations; null: none (validation runs once, after training) */
  eval_steps?: number | null;
}

/** The request fields {@link resolveJobConfig} reads. */
export interface JobConfigInput {
  method?: MethodInput;
  hyperparameters?: HyperparametersInput;
  checkpointing?: { every_n_steps?: 'auto' | number };
  seed?: number;
  device?: DeviceInput | null;
}

/** Everything the worker needs besides the files and the model. */
export interface ResolvedJobConfig {
  method: Method;
  hyperparameters: Hyperparameters;
  checkpointEvery: number;
  seed: number;
  totalSteps: number;
  /** null: the worker's own */
  device: JobDevice | null;
}

/** A request that is well-formed but does not fit the model or the data. `param` is a dotted path. */
export class JobConfigError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = 'JobConfigError';
  }
}

/** Learning rate that `learning_rate_multiplier` multiplies. */
export const BASE_LEARNING_RATE = 1e-3;

type Fail = (code: string, message: string, param: string) => never;

/**
 * Resolves and checks a job's configuration.
 *
 * Per method: `method.edge_llm` (exits, windows, LUC compression) applies to edge_llm and rag_edge_llm only,
 * `method.rag` to the rag types only; a part given to a method it does not apply to is refused. `lora` trains
 * one window (every layer, exit = the last layer). A `rag` job trains nothing: its hyperparameters are
 * resolved, checked and echoed as for the other methods (only `max_length` acts: it bounds each prompt with
 * its retrieved examples), but totalSteps is 0, warmup_steps 0 and eval_steps null.
 *
 * `eval_steps: "auto"` (default) is max(1, round(totalSteps / {@link AUTO_EVALUATIONS})) when early stopping or
 * a time budget is set and there is validation data, else null (no in-loop evaluation).
 * @param model the base model's layer count, hidden size, context length
 * @param trainRecords records in the training file
 * @param validationRecords records in the validation file (null: none); early stopping and eval_steps need one
 * @throws JobConfigError naming the offending parameter (`validation_file_required` for early stopping or
 *   eval_steps without validation data; `invalid_method` for a method part the method does not take)
 */
export function resolveJobConfig(
  input: JobConfigInput,
  model: { numLayers: number; hiddenSize: number; maxPositionEmbeddings: number },
  trainRecords: number,
  validationRecords: number | null = null,
): ResolvedJobConfig {
  const limits: ModelLimits = limitsOf(model);
  const hp = input.hyperparameters ?? {};
  const type: MethodType = input.method?.type ?? 'edge_llm';
  const fail: Fail = (code, message, param) => {
    throw new JobConfigError(code, message, param);
  };
  const edge = isEdgeLlmMethod(type) ? resolveEdgeLlm(input.method?.edge_llm ?? {}, limits.n_layers, fail) : null;
  if (!edge && input.method?.edge_llm) refuseEdgeLlm(type, input.method.edge_llm, fail);
  const rag = isRagMethod(type) ? resolveRag(input.method?.rag ?? {}, fail) : null;
  if (!rag && input.method?.rag) fail('invalid_method', `method.rag applies to rag, rag_edge_llm and rag_lora, not ${type}`, 'method.rag');

  const batch = hp.batch_size === undefined || hp.batch_size === 'auto' ? Math.max(1, Math.min(8, trainRecords)) : hp.batch_size;
  const accum = hp.gradient_accumulation_steps ?? 1;
  const perEpoch = Math.max(1, Math.ceil(trainRecords / (batch * accum)));
  const maxSteps = hp.max_steps ?? null;
  const epochs = hp.n_epochs === undefined || hp.n_epochs === 'auto' ? (maxSteps ? Math.ceil(maxSteps / perEpoch) : 1) : hp.n_epochs;
  const totalSteps = type === 'rag' ? 0 : (maxSteps ?? epochs * perEpoch);
  const windows = edge?.exit_layers.length ?? 1;
  if (totalSteps > 0 && totalSteps < windows && windows > 1) {
    fail(
      'invalid_hyperparameters',
      `${totalSteps} steps cannot train ${windows} exit windows; raise max_steps or n_epochs`,
      maxSteps ? 'hyperparameters.max_steps' : 'hyperparameters.n_epochs',
    );
  }
  const mult = hp.learning_rate_multiplier === undefined || hp.learning_rate_multiplier === 'auto' ? 1 : hp.learning_rate_multiplier;
  const lr = hp.learning_rate ?? BASE_LEARNING_RATE * mult;
  const r = hp.lora_r ?? 8;
  if (r > limits.max_lora_rank)
    fail('invalid_hyperparameters', `lora_r ${r} exceeds this model's max_lora_rank ${limits.max_lora_rank}`, 'hyperparameters.lora_r');
  const targets =
    hp.target_modules === undefined || hp.target_modules === 'all-linear' ? [...LINEAR_NAMES] : [...new Set(hp.target_modules)];
  for (const t of targets) {
    if (!(LINEAR_NAMES as readonly string[]).includes(t))
      fail('invalid_hyperparameters', `unknown target module "${t}"; use ${LINEAR_NAMES.join(', ')}`, 'hyperparameters.target_modules');
  }
  const maxLength = hp.max_length ?? Math.min(256, limits.max_length);
  if (maxLength > limits.max_length)
    fail(
      'invalid_hyperparameters',
      `max_length ${maxLength} exceeds this model's limit ${limits.max_length}`,
      'hyperparameters.max_length',
    );
  const warmup = hp.warmup_steps === undefined || hp.warmup_steps === 'auto' ? Math.min(10, Math.floor(totalSteps * 0.1)) : hp.warmup_steps;
  const stopping = resolveStopping(hp, totalSteps, validationRecords, fail);
  const device =
    input.device && (input.device.memory_budget_bytes !== undefined || input.device.threads !== undefined)
      ? { memory_budget_bytes: input.device.memory_budget_bytes ?? null, threads: input.device.threads ?? null }
      : null;
  const every = input.checkpointing?.every_n_steps;
  const checkpointEvery = every === undefined || every === 'auto' ? Math.max(1, Math.ceil(totalSteps / 10)) : every;

  return {
    method: { type, ...(edge ? { edge_llm: edge } : {}), ...(rag ? { rag } : {}) },
    hyperparameters: {
      n_epochs: epochs,
      batch_size: batch,
      learning_rate_multiplier: mult,
      learning_rate: lr,
      max_steps: maxSteps,
      gradient_accumulation_steps: accum,
      warmup_steps: Math.min(warmup, totalSteps),
      lr_scheduler: hp.lr_scheduler ?? 'cosine',
      weight_decay: hp.weight_decay ?? 0,
      max_grad_norm: hp.max_grad_norm ?? 1,
      lora_r: r,
      lora_alpha: hp.lora_alpha ?? 2 * r,
      lora_dropout: hp.lora_dropout ?? 0.05,
      target_modules: targets,
      max_length: maxLength,
      ...stopping,
    },
    checkpointEvery,
    seed: input.seed ?? randomInt(0, 2 ** 31 - 1),
    totalSteps,
    device,
  };
}

/** `method.edge_llm` with its defaults: exits checked against the model (sorted, distinct, the last = the last layer). */
function resolveEdgeLlm(el: EdgeLlmMethodInput, nLayers: number, fail: Fail): EdgeLlmMethod {
  const exitLayers = (el.exit_layers === undefined || el.exit_layers === 'auto' ? defaultExitLayers(nLayers) : [...el.exit_layers]).sort(
    (a, b) => a - b,
  );
  exitLayers.forEach((l, i) => {
    if (l < 0 || l >= nLayers) fail('invalid_exit_layers', `exit layer ${l} is outside 0..${nLayers - 1}`, 'method.edge_llm.exit_layers');
    if (i > 0 && exitLayers[i - 1] === l) fail('invalid_exit_layers', `exit layer ${l} is listed twice`, 'method.edge_llm.exit_layers');
  });
  if (exitLayers[exitLayers.length - 1] !== nLayers - 1) {
    fail('invalid_exit_layers', `the last exit must be the last layer (${nLayers - 1})`, 'method.edge_llm.exit_layers');
  }
  return {
    exit_layers: exitLayers,
    schedule: el.schedule ?? 'sequential',
    train_heads: el.train_heads ?? true,
    head_rank: el.head_rank ?? 0,
    prefix: el.prefix ?? 'backbone',
    voting: 'auto',
    compression: resolveCompression(el.compression ?? null, fail),
  };
}

/** Refuses `method.edge_llm` on a method without Edge-LLM, naming compression when it was asked for (LUC is Edge-LLM's). */
function refuseEdgeLlm(type: MethodType, el: EdgeLlmMethodInput, fail: Fail): never {
  if (el.compression)
    fail(
      'invalid_method',
      `compression (LUC) is part of Edge-LLM: method ${type} cannot compress the base model; use edge_llm or rag_edge_llm`,
      'method.edge_llm.compression',
    );
  return fail('invalid_method', `method.edge_llm applies to edge_llm and rag_edge_llm, not ${type}`, 'method.edge_llm');
}

/** `method.rag` with its defaults ({@link RAG_DEFAULTS}): k an integer in 1..MAX_RAG_K, context_share in (0, 1). */
function resolveRag(rag: NonNullable<MethodInput['rag']>, fail: Fail): RagMethod {
  const k = rag.k ?? RAG_DEFAULTS.k;
  const share = rag.context_share ?? RAG_DEFAULTS.context_share;
  if (!Number.isInteger(k) || k < 1 || k > MAX_RAG_K)
    fail('invalid_method', `method.rag.k must be an integer in 1..${MAX_RAG_K} (got ${k})`, 'method.rag.k');
  if (!(share > 0 && share < 1))
    fail('invalid_method', `method.rag.context_share must be in (0, 1) (got ${share})`, 'method.rag.context_share');
  return { k, context_share: share };
}

/**
 * The time budget, early stopping and in-loop evaluation of a job (see {@link resolveJobConfig}). A budget
 * or early stopping on a run with no steps (`rag`) is echoed and does nothing.
 */
function resolveStopping(
  hp: HyperparametersInput,
  totalSteps: number,
  validationRecords: number | null,
  fail: Fail,
): Required<Pick<Hyperparameters, 'time_budget_s' | 'early_stopping' | 'eval_steps'>> {
  const budget = hp.time_budget_s ?? null;
  if (budget !== null && !(budget > 0 && budget <= MAX_TIME_BUDGET_S))
    fail(
      'invalid_hyperparameters',
      `time_budget_s must be in (0, ${MAX_TIME_BUDGET_S}] seconds (7 days); got ${budget}`,
      'hyperparameters.time_budget_s',
    );
  const hasVal = validationRecords !== null && validationRecords > 0;
  let stopping: Hyperparameters['early_stopping'] = null;
  if (hp.early_stopping) {
    const { patience, min_delta: minDelta = 0 } = hp.early_stopping;
    if (!Number.isInteger(patience) || patience < 1)
      fail(
        'invalid_hyperparameters',
        `early_stopping.patience must be an integer >= 1 (got ${patience})`,
        'hyperparameters.early_stopping.patience',
      );
    if (!(minDelta >= 0 && Number.isFinite(minDelta)))
      fail(
        'invalid_hyperparameters',
        `early_stopping.min_delta must be >= 0 (got ${minDelta})`,
        'hyperparameters.early_stopping.min_delta',
      );
    if (!hasVal)
      fail(
        'validation_file_required',
        'early_stopping watches the validation metric: give a validation_file',
        'hyperparameters.early_stopping',
      );
    stopping = { patience, min_delta: minDelta };
  }
  const e = hp.eval_steps ?? 'auto';
  let evalSteps: number | null;
  if (e === 'auto') evalSteps = (stopping || budget !== null) && hasVal ? Math.max(1, Math.round(totalSteps / AUTO_EVALUATIONS)) : null;
  else {
    if (!Number.isInteger(e) || e < 1)
      fail('invalid_hyperparameters', `eval_steps must be "auto" or an integer >= 1 (got ${e})`, 'hyperparameters.eval_steps');
    if (!hasVal)
      fail('validation_file_required', 'eval_steps evaluates on the validation data: give a validation_file', 'hyperparameters.eval_steps');
    evalSteps = e;
  }
  return { time_budget_s: budget, early_stopping: stopping, eval_steps: totalSteps > 0 ? evalSteps : null };
}

/** Fills in a compression budget's defaults and checks what the schema cannot (the bit rule's needs). */
function resolveCompression(c: CompressionInput | null, fail: Fail): Compression | null {
  if (!c) return null;
  const out: Compression = {
    target_sparsity: c.target_sparsity,
    avg_bits: c.avg_bits,
    method: c.method ?? 'wanda',
    sparsity_rule: c.sparsity_rule ?? 'owl',
    bits_rule: c.bits_rule ?? 'budgeted',
    group_size: c.group_size ?? 0,
  };
  if (out.bits_rule === 'uniform' && !(WEIGHT_BITS as readonly number[]).includes(out.avg_bits)) {
    fail(
      'invalid_compression',
      `bits_rule "uniform" gives every layer avg_bits bits, so avg_bits must be one of ${WEIGHT_BITS.join(', ')} (got ${out.avg_bits})`,
      'method.edge_llm.compression.avg_bits',
    );
  }
  return out;
}
