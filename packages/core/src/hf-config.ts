/**
 * LLaMA-family configuration, parsed from a Hugging Face `config.json`
 * (transformers `models/llama/configuration_llama.py`; Mistral/Qwen2-style configs with the same
 * decoder layout load too when they use no sliding window).
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

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
  attentionBias: boolean;
  mlpBias: boolean;
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

function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ModelConfigError(`config.json: "${key}" must be a number (got ${JSON.stringify(raw[key])})`);
  return v;
}
function firstId(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

/**
 * Parses a Hugging Face config object.
 * @throws ModelConfigError for a non-LLaMA activation, rope scaling we do not implement, sliding windows,
 *   or heads that do not divide evenly.
 */
export function parseLlamaConfig(raw: Record<string, unknown>): LlamaConfig {
  const act = (raw.hidden_act ?? raw.hidden_activation ?? 'silu') as string;
  if (act !== 'silu' && act !== 'swish') throw new ModelConfigError(`config.json: hidden_act "${act}" is not supported (LLaMA uses silu)`);
  if (raw.rope_scaling != null) throw new ModelConfigError('config.json: rope_scaling is not supported yet (plain RoPE only)');
  if (raw.use_sliding_window === true) throw new ModelConfigError('config.json: sliding-window attention is not supported');
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
    attentionBias: raw.attention_bias === true,
    mlpBias: raw.mlp_bias === true,
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

/** Serialises a config back to HF `config.json` form (LlamaForCausalLM, float32). */
export function toHfConfig(c: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
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
    attention_bias: c.attentionBias,
    mlp_bias: c.mlpBias,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    torch_dtype: 'float32',
    ...extra,
  };
}
