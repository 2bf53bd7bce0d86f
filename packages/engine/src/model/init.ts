/**
 * A model folder from nothing: randomly initialised weights as HF's `_init_weights` makes them, and the
 * Hugging Face folder layout (config.json, model.safetensors, generation_config.json) they are saved in.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { linearHasBias, toHfConfig, type LlamaConfig, type LinearName } from '@edgetune/core';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { Rng } from '../util/rng.js';
import { resident, widenAll, type FileMatrix, type StoredMatrix } from '../backend/frozen.js';

/**
 * Random-normal(0, 0.02) linears and embeddings, zero biases (on the linears linearHasBias names), ones
 * for norms (HF `_init_weights`).
 */
export function initLlamaWeights(c: LlamaConfig, rng: Rng): Map<string, tf.Variable> {
  const m = new Map<string, tf.Variable>();
  const normal = (shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1),
      a = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u1 = Math.max(rng.next(), 1e-12),
        u2 = rng.next(),
        r = Math.sqrt(-2 * Math.log(u1)) * 0.02;
      a[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) a[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return tf.variable(tf.tensor(a, shape), true);
  };
  const ones = (n: number) => tf.variable(tf.ones([n]), true);
  const d = c.hiddenSize,
    dh = c.headDim;
  // [out, in] of each linear, in HF layout.
  const shapes: [LinearName, string, number, number][] = [
    ['q_proj', 'self_attn', c.numAttentionHeads * dh, d],
    ['k_proj', 'self_attn', c.numKeyValueHeads * dh, d],
    ['v_proj', 'self_attn', c.numKeyValueHeads * dh, d],
    ['o_proj', 'self_attn', d, c.numAttentionHeads * dh],
    ['gate_proj', 'mlp', c.intermediateSize, d],
    ['up_proj', 'mlp', c.intermediateSize, d],
    ['down_proj', 'mlp', d, c.intermediateSize],
  ];
  m.set('model.embed_tokens.weight', normal([c.vocabSize, d]));
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}`;
    for (const [name, block, out, inn] of shapes) {
      m.set(`${p}.${block}.${name}.weight`, normal([out, inn]));
      if (linearHasBias(c, name)) m.set(`${p}.${block}.${name}.bias`, tf.variable(tf.zeros([out]), true));
    }
    m.set(`${p}.input_layernorm.weight`, ones(d));
    m.set(`${p}.post_attention_layernorm.weight`, ones(d));
  }
  m.set('model.norm.weight', ones(d));
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', normal([c.vocabSize, d]));
  return m;
}

/**
 * Writes `config.json`, `model.safetensors` (in `dtype`) and `generation_config.json` for a model whose
 * weights are given by HF name. Tokenizer files are written by the caller.
 */
export function saveModelFolder(
  dir: string,
  config: LlamaConfig,
  weights: Map<string, tf.Tensor | StoredMatrix | FileMatrix>,
  dtype: 'F32' | 'F16' | 'BF16' = 'F32',
): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, v] of weights) {
    if (v instanceof tf.Tensor) tensors.set(name, { shape: v.shape, data: v.dataSync() as Float32Array, dtype });
    else if (v.dtype === dtype) tensors.set(name, { shape: [v.rows, v.cols], data: (resident(v) as StoredMatrix).data, dtype });
    else tensors.set(name, { shape: [v.rows, v.cols], data: widenAll(v), dtype });
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify(toHfConfig(config, { torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16' }), null, 2) +
      '\n',
  );
  writeFileSync(
    join(dir, 'generation_config.json'),
    `${JSON.stringify({ bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId, pad_token_id: config.padTokenId }, null, 2)}\n`,
  );
}
