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

/** `method` as a client sends it. */
export interface MethodInput {
  type: 'edge_llm';
  edge_llm?: {
    exit_layers?: 'auto' | number[];
    schedule?: 'sequential' | 'round_robin' | 'random';
    train_heads?: boolean;
    head_rank?: number;
    prefix?: 'backbone' | 'adapted';
    voting?: 'auto';
    compression?: CompressionInput | null;
  };
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
}

/** Resolved method. */
export interface Method {
  type: 'edge_llm';
  edge_llm: {
    exit_layers: number[];
    schedule: 'sequential' | 'round_robin' | 'random';
    train_heads: boolean;
    head_rank: number;
    prefix?: 'backbone' | 'adapted';
    voting: 'auto';
    compression: Compression | null;
  };
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

/**
 * Resolves and checks a job's configuration.
 * @param model the base model's layer count, hidden size, context length
 * @param trainRecords records in the training file
 * @throws JobConfigError naming the offending parameter
 */
export function resolveJobConfig(
  input: JobConfigInput,
  model: { numLayers: number; hiddenSize: number; maxPositionEmbeddings: number },
  trainRecords: number,
): ResolvedJobConfig {
  const limits: ModelLimits = limitsOf(model);
  const hp = input.hyperparameters ?? {};
  const el = input.method?.edge_llm ?? {};
  const fail = (code: string, message: string, param: string): never => {
    throw new JobConfigError(code, message, param);
  };

  let exitLayers = el.exit_layers === undefined || el.exit_layers === 'auto' ? defaultExitLayers(limits.n_layers) : [...el.exit_layers];
  exitLayers = exitLayers.sort((a, b) => a - b);
  exitLayers.forEach((l, i) => {
    if (l < 0 || l >= limits.n_layers)
      fail('invalid_exit_layers', `exit layer ${l} is outside 0..${limits.n_layers - 1}`, 'method.edge_llm.exit_layers');
    if (i > 0 && exitLayers[i - 1] === l) fail('invalid_exit_layers', `exit layer ${l} is listed twice`, 'method.edge_llm.exit_layers');
  });
  if (exitLayers[exitLayers.length - 1] !== limits.n_layers - 1) {
    fail('invalid_exit_layers', `the last exit must be the last layer (${limits.n_layers - 1})`, 'method.edge_llm.exit_layers');
  }

  const batch = hp.batch_size === undefined || hp.batch_size === 'auto' ? Math.max(1, Math.min(8, trainRecords)) : hp.batch_size;
  const accum = hp.gradient_accumulation_steps ?? 1;
  const perEpoch = Math.max(1, Math.ceil(trainRecords / (batch * accum)));
  const maxSteps = hp.max_steps ?? null;
  const epochs = hp.n_epochs === undefined || hp.n_epochs === 'auto' ? (maxSteps ? Math.ceil(maxSteps / perEpoch) : 1) : hp.n_epochs;
  const totalSteps = maxSteps ?? epochs * perEpoch;
  if (totalSteps < exitLayers.length && exitLayers.length > 1) {
    fail(
      'invalid_hyperparameters',
      `${totalSteps} steps cannot train ${exitLayers.length} exit windows; raise max_steps or n_epochs`,
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
  const compression = resolveCompression(el.compression ?? null, fail);
  const device =
    input.device && (input.device.memory_budget_bytes !== undefined || input.device.threads !== undefined)
      ? { memory_budget_bytes: input.device.memory_budget_bytes ?? null, threads: input.device.threads ?? null }
      : null;
  const every = input.checkpointing?.every_n_steps;
  const checkpointEvery = every === undefined || every === 'auto' ? Math.max(1, Math.ceil(totalSteps / 10)) : every;

  return {
    method: {
      type: 'edge_llm',
      edge_llm: {
        exit_layers: exitLayers,
        schedule: el.schedule ?? 'sequential',
        train_heads: el.train_heads ?? true,
        head_rank: el.head_rank ?? 0,
        prefix: el.prefix ?? 'backbone',
        voting: 'auto',
        compression,
      },
    },
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
    },
    checkpointEvery,
    seed: input.seed ?? randomInt(0, 2 ** 31 - 1),
    totalSteps,
    device,
  };
}

/** Fills in a compression budget's defaults and checks what the schema cannot (the bit rule's needs). */
function resolveCompression(c: CompressionInput | null, fail: (code: string, message: string, param: string) => never): Compression | null {
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
