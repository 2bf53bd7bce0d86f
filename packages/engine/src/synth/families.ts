/**
 * The real configurations `synth-model` imitates: config.json values, tokenizer format and special tokens at
 * their real ids, tokenizer_config.json and generation_config.json fields, from each Hugging Face repository
 * (the Instruct / Chat variants, whose shapes equal the base models' and whose tokenizers carry a chat template).
 */
import type { LlamaConfig } from '@edgetune/core';
import type { ByteLevelFamily } from '../tokenizer/bpe-trainer.js';
import type { PlacedToken } from '../tokenizer/vocab-layout.js';
import { LLAMA3_2_CHAT_TEMPLATE, QWEN2_5_CHAT_TEMPLATE, SMOLLM2_CHAT_TEMPLATE, TINYLLAMA_CHAT_TEMPLATE } from '../tokenizer/templates.js';

/** How the family's tokenizer is built (see the trainers in ../tokenizer). */
export type SynthTokenizerKind =
  | {
      kind: 'byte-level';
      family: ByteLevelFamily /** specials trained in at ids 0..n-1 */;
      leading: string[] /** specials placed at fixed ids after the trained vocabulary */;
      placed: PlacedToken[] /** token `encode` puts in front, if any */;
      bos: string | null;
    }
  | { kind: 'sentencepiece'; leading: string[]; bos: string };

/** One model `synth-model --like NAME` can imitate. */
export interface SynthFamily {
  /** The Hugging Face repository whose configuration this is. */
  hfRepo: string;
  config: LlamaConfig;
  /** config.json fields beyond what `toHfConfig` writes (dtype, initializer_range, multi-id eos...). */
  configExtra: Record<string, unknown>;
  /** std of the normal init of embeddings and linears (config `initializer_range`). */
  initializerRange: number;
  tokenizer: SynthTokenizerKind;
  tokenizerConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
}

const LLAMA3_SPECIALS: PlacedToken[] = (() => {
  const named: Record<number, string> = {
    128000: '<|begin_of_text|>',
    128001: '<|end_of_text|>',
    128002: '<|reserved_special_token_0|>',
    128003: '<|reserved_special_token_1|>',
    128004: '<|finetune_right_pad_id|>',
    128005: '<|reserved_special_token_2|>',
    128006: '<|start_header_id|>',
    128007: '<|end_header_id|>',
    128008: '<|eom_id|>',
    128009: '<|eot_id|>',
    128010: '<|python_tag|>',
  };
  const out: PlacedToken[] = [];
  for (let id = 128000; id < 128256; id++) out.push({ id, content: named[id] ?? `<|reserved_special_token_${id - 128008}|>` });
  return out;
})();

const QWEN2_SPECIALS: PlacedToken[] = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|object_ref_start|>',
  '<|object_ref_end|>',
  '<|box_start|>',
  '<|box_end|>',
  '<|quad_start|>',
  '<|quad_end|>',
  '<|vision_start|>',
  '<|vision_end|>',
  '<|vision_pad|>',
  '<|image_pad|>',
  '<|video_pad|>',
  '<tool_call>',
  '</tool_call>',
  '<|fim_prefix|>',
  '<|fim_middle|>',
  '<|fim_suffix|>',
  '<|fim_pad|>',
  '<|repo_name|>',
  '<|file_sep|>',
].map((content, i) => ({ id: 151643 + i, content, special: i < 14 }));

const SMOLLM2_SPECIALS = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<repo_name>',
  '<reponame>',
  '<file_sep>',
  '<filename>',
  '<gh_stars>',
  '<issue_start>',
  '<issue_comment>',
  '<issue_closed>',
  '<jupyter_start>',
  '<jupyter_text>',
  '<jupyter_code>',
  '<jupyter_output>',
  '<jupyter_script>',
  '<empty_output>',
];

/** LlamaConfig fields every family here shares. */
const COMMON = { attentionBias: false, mlpBias: false, hiddenAct: 'silu', slidingWindow: null, ropeScaling: null } as const;

function smollm2(
  size: '135M' | '360M',
  hidden: number,
  inter: number,
  layers: number,
  heads: number,
  kv: number,
  init: number,
): SynthFamily {
  return {
    hfRepo: `HuggingFaceTB/SmolLM2-${size}-Instruct`,
    config: {
      ...COMMON,
      modelType: 'llama',
      vocabSize: 49152,
      hiddenSize: hidden,
      intermediateSize: inter,
      numHiddenLayers: layers,
      numAttentionHeads: heads,
      numKeyValueHeads: kv,
      headDim: hidden / heads,
      rmsNormEps: 1e-5,
      ropeTheta: 100000,
      tieWordEmbeddings: true,
      maxPositionEmbeddings: 8192,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: 2,
    },
    configExtra: { initializer_range: init },
    initializerRange: init,
    tokenizer: { kind: 'byte-level', family: 'smollm2', leading: SMOLLM2_SPECIALS, placed: [], bos: null },
    tokenizerConfig: {
      tokenizer_class: 'GPT2Tokenizer',
      bos_token: '<|im_start|>',
      eos_token: '<|im_end|>',
      pad_token: '<|im_end|>',
      unk_token: '<|endoftext|>',
      additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
      clean_up_tokenization_spaces: false,
      model_max_length: 8192,
      vocab_size: 49152,
      chat_template: SMOLLM2_CHAT_TEMPLATE,
    },
    generationConfig: { bos_token_id: 1, eos_token_id: 2, pad_token_id: 2 },
  };
}

function llama32(size: '1B' | '3B', hidden: number, layers: number, heads: number, headDim: number): SynthFamily {
  return {
    hfRepo: `meta-llama/Llama-3.2-${size}-Instruct`,
    config: {
      ...COMMON,
      modelType: 'llama',
      vocabSize: 128256,
      hiddenSize: hidden,
      intermediateSize: 8192,
      numHiddenLayers: layers,
      numAttentionHeads: heads,
      numKeyValueHeads: 8,
      headDim,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: { ropeType: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      tieWordEmbeddings: true,
      maxPositionEmbeddings: 131072,
      bosTokenId: 128000,
      eosTokenId: 128001,
      padTokenId: null,
    },
    configExtra: { initializer_range: 0.02, eos_token_id: [128001, 128008, 128009], pretraining_tp: 1 },
    initializerRange: 0.02,
    tokenizer: { kind: 'byte-level', family: 'llama3', leading: [], placed: LLAMA3_SPECIALS, bos: '<|begin_of_text|>' },
    tokenizerConfig: {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: '<|begin_of_text|>',
      eos_token: '<|eot_id|>',
      clean_up_tokenization_spaces: true,
      model_input_names: ['input_ids', 'attention_mask'],
      model_max_length: 131072,
      chat_template: LLAMA3_2_CHAT_TEMPLATE,
    },
    generationConfig: { bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128008, 128009], temperature: 0.6, top_p: 0.9 },
  };
}

/** The models `synth-model --like` knows, by name. */
export const SYNTH_FAMILIES: Record<string, SynthFamily> = {
  'smollm2-135m': smollm2('135M', 576, 1536, 30, 9, 3, 0.041666666666666664),
  'smollm2-360m': smollm2('360M', 960, 2560, 32, 15, 5, 0.02),
  'qwen2.5-0.5b': {
    hfRepo: 'Qwen/Qwen2.5-0.5B-Instruct',
    config: {
      ...COMMON,
      modelType: 'qwen2',
      vocabSize: 151936,
      hiddenSize: 896,
      intermediateSize: 4864,
      numHiddenLayers: 24,
      numAttentionHeads: 14,
      numKeyValueHeads: 2,
      headDim: 64,
      rmsNormEps: 1e-6,
      ropeTheta: 1000000,
      tieWordEmbeddings: true,
      maxPositionEmbeddings: 32768,
      bosTokenId: 151643,
      eosTokenId: 151645,
      padTokenId: null,
    },
    configExtra: { initializer_range: 0.02, sliding_window: 32768, max_window_layers: 21 },
    initializerRange: 0.02,
    tokenizer: { kind: 'byte-level', family: 'qwen2', leading: [], placed: QWEN2_SPECIALS, bos: null },
    tokenizerConfig: {
      tokenizer_class: 'Qwen2Tokenizer',
      add_prefix_space: false,
      bos_token: null,
      eos_token: '<|im_end|>',
      pad_token: '<|endoftext|>',
      unk_token: null,
      additional_special_tokens: QWEN2_SPECIALS.filter((t) => t.special).map((t) => t.content),
      clean_up_tokenization_spaces: false,
      errors: 'replace',
      split_special_tokens: false,
      model_max_length: 131072,
      chat_template: QWEN2_5_CHAT_TEMPLATE,
    },
    generationConfig: {
      bos_token_id: 151643,
      pad_token_id: 151643,
      do_sample: true,
      eos_token_id: [151645, 151643],
      repetition_penalty: 1.1,
      temperature: 0.7,
      top_p: 0.8,
      top_k: 20,
    },
  },
  'tinyllama-1.1b': {
    hfRepo: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
    config: {
      ...COMMON,
      modelType: 'llama',
      vocabSize: 32000,
      hiddenSize: 2048,
      intermediateSize: 5632,
      numHiddenLayers: 22,
      numAttentionHeads: 32,
      numKeyValueHeads: 4,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 2048,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: null,
    },
    configExtra: { initializer_range: 0.02, pretraining_tp: 1 },
    initializerRange: 0.02,
    tokenizer: { kind: 'sentencepiece', leading: ['<unk>', '<s>', '</s>'], bos: '<s>' },
    tokenizerConfig: {
      tokenizer_class: 'LlamaTokenizer',
      add_bos_token: true,
      add_eos_token: false,
      bos_token: '<s>',
      eos_token: '</s>',
      pad_token: '</s>',
      unk_token: '<unk>',
      clean_up_tokenization_spaces: false,
      legacy: false,
      model_max_length: 2048,
      padding_side: 'right',
      use_default_system_prompt: false,
      chat_template: TINYLLAMA_CHAT_TEMPLATE,
    },
    generationConfig: { bos_token_id: 1, eos_token_id: 2, max_length: 2048, pad_token_id: 0 },
  },
  'llama-3.2-1b': llama32('1B', 2048, 16, 32, 64),
  'llama-3.2-3b': llama32('3B', 3072, 28, 24, 128),
};
