/**
 * LLaMA-family configuration, parsed from a Hugging Face `config.json`
 * (transformers `models/llama/configuration_llama.py`, `models/mistral/configuration_mistral.py`,
 * `models/qwen2/configuration_qwen2.py`): the same decoder with, per family, biases on the attention
 * projections (Qwen2), a sliding attention window (Mistral) and scaled rotary frequencies (`rope_scaling`).
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LinearName } from './names.js';

/** The decoder families parsed here (HF `model_type`); a config without `model_type` is read as `llama`. */
export type ModelType = 'llama' | 'mistral' | 'qwen2';

const MODEL_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2'];

/**
 * RoPE frequency scaling (HF `rope_scaling`, transformers `modeling_rope_utils.py`): `linear` divides every
 * inverse frequency by `factor`; `llama3` divides the low-frequency bands only (`_compute_llama3_parameters`).
 */
export type RopeScaling =
  | { ropeType: 'linear'; factor: number }
  | {
      ropeType: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      /** context length (tokens) the unscaled model was trained on */
      originalMaxPositionEmbeddings: number;
    };

/** The decoder's hyperparameters, camelCase. All sizes are element counts. */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Key/value heads; < numAttentionHeads means grouped-query attention, equal means plain multi-head. */
  numKeyValueHeads: number;
  /** Per-head size; HF default hiddenSize / numAttentionHeads. */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** When true, `lm_head` shares `model.embed_tokens.weight`. */
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  /** HF LlamaConfig `attention_bias`: a bias on q_proj, k_proj, v_proj and o_proj (llama only; see linearHasBias). */
  attentionBias: boolean;
  mlpBias: boolean;
  /** HF `model_type`; absent means `llama`. Qwen2 has q/k/v biases by architecture. */
  modelType?: ModelType;
  /** Scaled rotary frequencies; null or absent = plain RoPE. */
  ropeScaling?: RopeScaling | null;
  /**
   * Mistral `sliding_window` W (tokens): a query at position i sees keys j with i - W < j <= i.
   * null or absent = full causal attention.
   */
  slidingWindow?: number | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  /** Only `silu` (SwiGLU) is supported, as in LlamaForCausalLM. */
  hiddenAct: 'silu';
}

/** Error for an unsupported or malformed model configuration. */
export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelConfigError';
  }
}

/** raw[key] as a finite number (`fallback` when absent); `where` prefixes the key in the error, e.g. `rope_scaling.`. */
function num(raw: Record<string, unknown>, key: string, fallback?: number, where = ''): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ModelConfigError(`config.json: "${where}${key}" must be a number (got ${JSON.stringify(raw[key])})`);
  return v;
}
function firstId(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

/**
 * HF `rope_scaling` -> RopeScaling; null for none or `rope_type: "default"`.
 * @throws ModelConfigError for another rope type (dynamic, yarn, longrope, ...) or a missing/invalid field.
 */
function parseRopeScaling(v: unknown): RopeScaling | null {
  if (v == null) return null;
  if (typeof v !== 'object' || Array.isArray(v))
    throw new ModelConfigError(`config.json: "rope_scaling" must be an object (got ${JSON.stringify(v)})`);
  const r = v as Record<string, unknown>;
  // transformers reads `rope_type`, falling back to the legacy `type`.
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  const positive = (key: string, fallback?: number) => {
    const x = num(r, key, fallback, 'rope_scaling.');
    if (x <= 0) throw new ModelConfigError(`config.json: "rope_scaling.${key}" must be positive (got ${x})`);
    return x;
  };
  if (type === 'linear') return { ropeType: 'linear', factor: positive('factor') };
  if (type === 'llama3') {
    const s: RopeScaling = {
      ropeType: 'llama3',
      factor: positive('factor'),
      lowFreqFactor: positive('low_freq_factor'),
      highFreqFactor: positive('high_freq_factor'),
      originalMaxPositionEmbeddings: positive('original_max_position_embeddings'),
    };
    if (s.highFreqFactor <= s.lowFreqFactor)
      throw new ModelConfigError(
        `config.json: rope_scaling.high_freq_factor ${s.highFreqFactor} must exceed rope_scaling.low_freq_factor ${s.lowFreqFactor}`,
      );
    return s;
  }
  throw new ModelConfigError(
    `config.json: rope_scaling.rope_type ${JSON.stringify(type ?? null)} is not supported (supported: linear, llama3)`,
  );
}

/**
 * The attention window of a config: Mistral's `sliding_window` (null = none); Qwen2 must not enable its
 * per-layer window (`use_sliding_window`); LLaMA has none.
 * @throws ModelConfigError for `use_sliding_window: true` or a window that is not a positive integer.
 */
function parseSlidingWindow(raw: Record<string, unknown>, modelType: ModelType): number | null {
  if (raw.use_sliding_window === true)
    throw new ModelConfigError('config.json: use_sliding_window true is not supported (Qwen2 per-layer sliding-window attention)');
  if (modelType !== 'mistral' || raw.sliding_window == null) return null;
  const w = num(raw, 'sliding_window');
  if (!Number.isInteger(w) || w < 1) throw new ModelConfigError(`config.json: "sliding_window" must be a positive integer (got ${w})`);
  return w;
}

/**
 * Whether a decoder linear carries a bias: MLP linears per `mlp_bias`; attention projections per
 * `attention_bias` (LlamaAttention, all four), except Qwen2 (Qwen2Attention: q/k/v yes, o_proj no).
 */
export function linearHasBias(c: LlamaConfig, name: LinearName): boolean {
  if (name === 'gate_proj' || name === 'up_proj' || name === 'down_proj') return c.mlpBias;
  if (c.modelType === 'qwen2') return name !== 'o_proj';
  return c.attentionBias;
}

/**
 * Parses a Hugging Face config object (`model_type` llama, mistral or qwen2; absent: llama).
 * @throws ModelConfigError for another `model_type` (its extra tensors would load silently wrong), a non-LLaMA activation, rope scaling other than linear/llama3, Qwen2's
 *   `use_sliding_window`, or heads that do not divide evenly.
 */
export function parseLlamaConfig(raw: Record<string, unknown>): LlamaConfig {
  const act = (raw.hidden_act ?? raw.hidden_activation ?? 'silu') as string;
  if (act !== 'silu' && act !== 'swish') throw new ModelConfigError(`config.json: hidden_act "${act}" is not supported (LLaMA uses silu)`);
  const modelType = (raw.model_type ?? 'llama') as ModelType;
  if (!MODEL_TYPES.includes(modelType)) {
    throw new ModelConfigError(
      `config.json: model_type ${JSON.stringify(raw.model_type)} is not supported (supported: ${MODEL_TYPES.join(', ')})`,
    );
  }
  const ropeScaling = parseRopeScaling(raw.rope_scaling);
  const slidingWindow = parseSlidingWindow(raw, modelType);
  // Mistral and Qwen2 have no attention_bias / mlp_bias fields (their biases are fixed by architecture).
  const llama = modelType === 'llama';
  const hiddenSize = num(raw, 'hidden_size');
  const numAttentionHeads = num(raw, 'num_attention_heads');
  const numKeyValueHeads = num(raw, 'num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    throw new ModelConfigError(
      `config.json: num_attention_heads ${numAttentionHeads} is not a multiple of num_key_value_heads ${numKeyValueHeads}`,
    );
  const headDim = raw.head_dim != null ? num(raw, 'head_dim') : hiddenSize / numAttentionHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0)
    throw new ModelConfigError(`config.json: head_dim ${headDim} must be an even integer`);
  return {
    vocabSize: num(raw, 'vocab_size'),
    hiddenSize,
    intermediateSize: num(raw, 'intermediate_size'),
    numHiddenLayers: num(raw, 'num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: num(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: num(raw, 'rope_theta', 10000),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    maxPositionEmbeddings: num(raw, 'max_position_embeddings', 2048),
    attentionBias: llama && raw.attention_bias === true,
    mlpBias: llama && raw.mlp_bias === true,
    modelType,
    ropeScaling,
    slidingWindow,
    bosTokenId: firstId(raw.bos_token_id),
    eosTokenId: firstId(raw.eos_token_id),
    padTokenId: firstId(raw.pad_token_id),
    hiddenAct: 'silu',
  };
}

/** Reads and parses `<dir>/config.json`. @throws ModelConfigError when missing or invalid. */
export function loadLlamaConfig(dir: string): LlamaConfig {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new ModelConfigError(`no config.json in ${dir}`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelConfigError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  return parseLlamaConfig(raw);
}

const ARCHITECTURES: Record<ModelType, string> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** RopeScaling -> HF `rope_scaling` (snake_case, `rope_type`). */
function toHfRopeScaling(s: RopeScaling): Record<string, unknown> {
  if (s.ropeType === 'linear') return { rope_type: 'linear', factor: s.factor };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositionEmbeddings,
  };
}

/** The fields only some families have: bias flags (llama), the window (mistral, qwen2), rope_scaling. */
function familyFields(c: LlamaConfig, modelType: ModelType): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (modelType === 'llama') {
    f.attention_bias = c.attentionBias;
    f.mlp_bias = c.mlpBias;
  }
  if (modelType === 'mistral') f.sliding_window = c.slidingWindow ?? null;
  if (modelType === 'qwen2') f.use_sliding_window = false;
  if (c.ropeScaling) f.rope_scaling = toHfRopeScaling(c.ropeScaling);
  return f;
}

/**
 * Serialises a config back to HF `config.json` form (`<Family>ForCausalLM`, float32) that
 * parseLlamaConfig reads back to the same config.
 */
export function toHfConfig(c: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const modelType = c.modelType ?? 'llama';
  return {
    architectures: [ARCHITECTURES[modelType]],
    model_type: modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    ...familyFields(c, modelType),
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    torch_dtype: 'float32',
    ...extra,
  };
}
