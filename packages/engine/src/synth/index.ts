/**
 * `synth-model`: writes a randomly initialised model folder with the exact configuration, tensor names, shapes,
 * dtype (BF16), sharding and tokenizer format of a real Hugging Face model, for benchmarks and tests that need
 * the real sizes but not the real weights. Every file says the weights are random.
 *
 * Weights follow transformers' `LlamaPreTrainedModel._init_weights`: embeddings and linear weights
 * N(0, initializer_range), biases 0, RMSNorm weights 1. Files are written tensor by tensor in chunks, so memory
 * stays at one chunk whatever the model size.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { toHfConfig, type LlamaConfig } from '@edgetune/core';
import { writeSafetensorsStream, tensorBytes, type TensorSpec } from '../io/safetensors-writer.js';
import { trainByteLevelBpe, type TokenizerJson } from '../tokenizer/bpe-trainer.js';
import { bosTemplateProcessing } from '../tokenizer/bpe-trainer.js';
import { trainSentencePieceBpe } from '../tokenizer/sentencepiece-bpe.js';
import { layoutVocabulary } from '../tokenizer/vocab-layout.js';
import { Bf16NormalStream } from './random-bf16.js';
import { SYNTH_CORPUS } from './corpus.js';
import { SYNTH_FAMILIES, type SynthFamily } from './families.js';

export { SYNTH_FAMILIES } from './families.js';
export type { SynthFamily, SynthTokenizerKind } from './families.js';

/** The names `--like` accepts. */
export const SYNTH_MODEL_NAMES: readonly string[] = Object.keys(SYNTH_FAMILIES);

/** HF `save_pretrained(max_shard_size="2GB")`: 2 * 10^9 bytes per shard. */
export const DEFAULT_MAX_SHARD_BYTES = 2_000_000_000;

/** Error for a bad `synth-model` request (unknown name, bad layer count, output path that is a file). */
export class SynthModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SynthModelError';
  }
}

/** Shape overrides for tests and experiments (the vocabulary and special ids stay the family's). */
export type SynthShapeOverrides = Partial<
  Pick<LlamaConfig, 'hiddenSize' | 'intermediateSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim'>
>;

/** Options of {@link synthModel}. */
export interface SynthModelOptions {
  /** One of {@link SYNTH_MODEL_NAMES}. */
  like: string;
  /** Output folder (created; files of the same names are overwritten). */
  outDir: string;
  /** PRNG seed (32-bit integer). Default 0. */
  seed?: number;
  /** Overrides `num_hidden_layers`. */
  layers?: number;
  /** Other shape overrides; `layers` wins over `numHiddenLayers`. */
  overrides?: SynthShapeOverrides;
  /** Largest shard in bytes before splitting (tensor bytes, as HF counts). Default {@link DEFAULT_MAX_SHARD_BYTES}. */
  maxShardBytes?: number;
  /** Bytes generated per write. Default 8 MiB. */
  chunkBytes?: number;
  /** Progress lines (one per shard). */
  log?: (line: string) => void;
}

/** What {@link synthModel} wrote. */
export interface SynthModelReport {
  dir: string;
  like: string;
  hfRepo: string;
  /** Parameters stored (tied lm_head counted once). */
  params: number;
  /** Bytes of the safetensors files (headers included). */
  bytes: number;
  shards: number;
  /** Wall time in seconds. */
  seconds: number;
}

/** How a tensor is initialised. */
export type SynthInit = 'normal' | 'ones' | 'zeros';

/**
 * The tensors of a LLaMA-family checkpoint in `state_dict` order (transformers `LlamaForCausalLM` /
 * `Qwen2ForCausalLM`): embed_tokens, per layer q/k/v/o projections (q/k/v biases for Qwen2 or
 * `attention_bias`), gate/up/down (biases with `mlp_bias`), input and post-attention norms, the final norm,
 * and `lm_head.weight` unless tied. Shapes are [out, in] as `nn.Linear` stores them. All BF16.
 */
export function synthTensorPlan(c: LlamaConfig): Array<TensorSpec & { init: SynthInit }> {
  const H = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const I = c.intermediateSize;
  const qkvBias = c.modelType === 'qwen2' || c.attentionBias;
  const out: Array<TensorSpec & { init: SynthInit }> = [];
  const add = (name: string, shape: number[], init: SynthInit) => out.push({ name, dtype: 'BF16', shape, init });
  add('model.embed_tokens.weight', [c.vocabSize, H], 'normal');
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = `model.layers.${l}`;
    const linear = (name: string, o: number, i: number, bias: boolean) => {
      add(`${p}.${name}.weight`, [o, i], 'normal');
      if (bias) add(`${p}.${name}.bias`, [o], 'zeros');
    };
    linear('self_attn.q_proj', q, H, qkvBias);
    linear('self_attn.k_proj', kv, H, qkvBias);
    linear('self_attn.v_proj', kv, H, qkvBias);
    linear('self_attn.o_proj', H, q, c.modelType !== 'qwen2' && c.attentionBias);
    linear('mlp.gate_proj', I, H, c.mlpBias);
    linear('mlp.up_proj', I, H, c.mlpBias);
    linear('mlp.down_proj', H, I, c.mlpBias);
    add(`${p}.input_layernorm.weight`, [H], 'ones');
    add(`${p}.post_attention_layernorm.weight`, [H], 'ones');
  }
  add('model.norm.weight', [H], 'ones');
  if (!c.tieWordEmbeddings) add('lm_head.weight', [c.vocabSize, H], 'normal');
  return out;
}

/**
 * Splits tensors into shards as huggingface_hub `split_torch_state_dict_into_shards` does: in order, a new shard
 * starts when the next tensor would push the current one past `maxShardBytes`; a tensor larger than that gets a
 * shard of its own.
 */
export function shardTensors<T extends TensorSpec>(tensors: readonly T[], maxShardBytes: number): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    if (n > maxShardBytes) {
      shards.push([t]);
      continue;
    }
    if (cur.length && size + n > maxShardBytes) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += n;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

/**
 * The family's tokenizer.json, trained on a small built-in corpus and laid out to `vocabSize` ids: specials at
 * their real ids, labelled filler tokens where the trained vocabulary ends. Cached per family and size: treat
 * the result as read-only.
 */
export function synthTokenizerJson(f: SynthFamily, vocabSize: number): TokenizerJson {
  const key = `${f.hfRepo}:${vocabSize}`;
  let tj = tokenizerCache.get(key);
  if (!tj) tokenizerCache.set(key, (tj = buildTokenizerJson(f, vocabSize)));
  return tj;
}

// Training takes a few hundred ms; the result depends only on the family and size.
const tokenizerCache = new Map<string, TokenizerJson>();

function buildTokenizerJson(f: SynthFamily, vocabSize: number): TokenizerJson {
  const t = f.tokenizer;
  // Training stops early on the small corpus; this only caps it.
  const trainVocab = (extra: number) => Math.min(vocabSize, extra + 4000);
  if (t.kind === 'sentencepiece') {
    const tj = trainSentencePieceBpe([SYNTH_CORPUS], {
      vocabSize: trainVocab(t.leading.length + 256),
      specialTokens: t.leading,
      bosToken: t.bos,
    });
    return layoutVocabulary(tj, vocabSize);
  }
  const tj = trainByteLevelBpe([SYNTH_CORPUS], {
    vocabSize: trainVocab(t.leading.length + 256),
    specialTokens: t.leading,
    family: t.family,
  });
  const laid = layoutVocabulary(tj, vocabSize, t.placed);
  if (t.bos !== null) {
    const bosId = laid.added_tokens.find((a) => a.content === t.bos)?.id;
    if (bosId === undefined) throw new SynthModelError(`bos token ${t.bos} is not in the vocabulary`);
    const bos = bosTemplateProcessing(t.bos, bosId);
    laid.post_processor = laid.post_processor ? { type: 'Sequence', processors: [laid.post_processor, bos] } : bos;
  }
  return laid;
}

function shardName(i: number, n: number): string {
  const pad = (x: number) => String(x).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

function readme(name: string, f: SynthFamily, c: LlamaConfig, seed: number, params: number): string {
  return `# RANDOM WEIGHTS: not ${f.hfRepo}

This folder was written by \`edgetune-engine synth-model --like ${name} --seed ${seed}\`. It has the configuration,
tensor names, shapes, BF16 dtype, sharding and tokenizer format of [${f.hfRepo}](https://huggingface.co/${f.hfRepo}),
but **its weights are random** (embeddings and linears N(0, ${f.initializerRange}), biases 0, norms 1) and its
tokenizer was trained on a few paragraphs of text, with labelled filler tokens (\`<edgetune_filler_ID>\`) up to the
vocabulary size and the real special tokens at their real ids. It produces meaningless text. Use it for
benchmarks of memory, speed and file handling only.

- layers: ${c.numHiddenLayers}, hidden: ${c.hiddenSize}, intermediate: ${c.intermediateSize}, heads: ${c.numAttentionHeads} (kv ${c.numKeyValueHeads}), vocab: ${c.vocabSize}
- parameters: ${params}
`;
}

/**
 * Writes a random model folder imitating `opts.like`: config.json (core's `toHfConfig`, BF16, with an
 * `edgetune_synthetic` note), model.safetensors or HF-style shards + model.safetensors.index.json, tokenizer.json,
 * tokenizer_config.json, generation_config.json and README.md.
 * @throws SynthModelError for an unknown name, a bad `layers` / `seed`, or an output path that is a file.
 */
export function synthModel(opts: SynthModelOptions): SynthModelReport {
  const t0 = performance.now();
  const f = SYNTH_FAMILIES[opts.like];
  if (!f) throw new SynthModelError(`unknown model ${JSON.stringify(opts.like)}; known: ${SYNTH_MODEL_NAMES.join(', ')}`);
  if (endianness() !== 'LE') throw new SynthModelError('writing BF16 needs a little-endian machine');
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new SynthModelError(`seed must be an integer in [0, 2^32), got ${seed}`);
  const config: LlamaConfig = { ...f.config, ...opts.overrides };
  if (opts.layers !== undefined) {
    if (!Number.isInteger(opts.layers) || opts.layers < 1)
      throw new SynthModelError(`layers must be a positive integer, got ${opts.layers}`);
    config.numHiddenLayers = opts.layers;
  }
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const dir = opts.outDir;
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new SynthModelError(`${dir} exists and is not a directory`);
  mkdirSync(dir, { recursive: true });
  const note = `random init, not ${f.hfRepo}`;

  // config.json through core's serialiser, then the real repository's extra fields.
  const extra: Record<string, unknown> = { ...f.configExtra, torch_dtype: 'bfloat16', use_cache: true, edgetune_synthetic: note };
  if (typeof extra.max_window_layers === 'number') extra.max_window_layers = Math.min(extra.max_window_layers, config.numHiddenLayers);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(toHfConfig(config, extra), null, 2)}\n`);
  writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify({ ...f.generationConfig, edgetune_synthetic: note }, null, 2)}\n`);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(synthTokenizerJson(f, config.vocabSize)));
  writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(f.tokenizerConfig, null, 2)}\n`);

  // Weights.
  const plan = synthTensorPlan(config);
  const params = plan.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  const initOf = new Map(plan.map((t) => [t.name, t.init]));
  const shards = shardTensors(plan, maxShardBytes);
  const names = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => shardName(i, shards.length));
  // Weight files of an earlier run with another layout would be read alongside the new ones.
  for (const stale of readdirSync(dir)) {
    if (/^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$/.test(stale)) rmSync(join(dir, stale), { force: true });
  }
  const metadata = { format: 'pt', edgetune_synthetic: note };
  let stream: Bf16NormalStream | null = null;
  let bytes = 0;
  shards.forEach((shard, i) => {
    bytes += writeSafetensorsStream(
      join(dir, names[i]!),
      shard,
      (t, chunk, byteOffset) => {
        const init = initOf.get(t.name)!;
        if (init === 'zeros') chunk.fill(0);
        else if (init === 'ones')
          new Uint16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2).fill(0x3f80); // BF16 1.0
        else {
          if (byteOffset === 0) stream = new Bf16NormalStream(seed, t.name, f.initializerRange);
          const words = chunk.byteLength >>> 2;
          stream!.fill(new Uint32Array(chunk.buffer, chunk.byteOffset, words));
          if (chunk.byteLength & 2) {
            // An odd element count leaves one BF16 value at the end of the last chunk.
            const w = new Uint32Array(1);
            stream!.fill(w);
            new Uint16Array(chunk.buffer, chunk.byteOffset + words * 4, 1)[0] = w[0]! & 0xffff;
          }
        }
      },
      { metadata, chunkBytes: opts.chunkBytes },
    );
    opts.log?.(`wrote ${names[i]} (${shard.length} tensors)`);
  });
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    const entries = shards.flatMap((s, i) => s.map((t) => [t.name, names[i]!] as const)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [name, file] of entries) weightMap[name] = file;
    const totalSize = plan.reduce((n, t) => n + tensorBytes(t), 0);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      `${JSON.stringify({ metadata: { total_size: totalSize, edgetune_synthetic: note }, weight_map: weightMap }, null, 2)}\n`,
    );
  }
  writeFileSync(join(dir, 'README.md'), readme(opts.like, f, config, seed, params));
  return { dir, like: opts.like, hfRepo: f.hfRepo, params, bytes, shards: shards.length, seconds: (performance.now() - t0) / 1000 };
}
