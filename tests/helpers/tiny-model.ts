// Builds tiny HF-format LLaMA folders (random weights + a BPE tokenizer) for fast tests.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as tf from '@tensorflow/tfjs-core';
import { initLlamaWeights, saveModelFolder } from '../../packages/engine/src/model/init.js';
import { SPECIAL_TOKENS } from '../../packages/lab/src/pretrain/pretrain.js';
import { trainByteLevelBpe, tokenizerConfigFor } from '../../packages/lab/src/tokenizer/bpe-trainer.js';
import type { LlamaConfig } from '../../packages/core/src/hf-config.js';
import { Rng } from '../../packages/engine/src/util/rng.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TOKENIZER_CORPUS = join(here, '..', 'fixtures', 'text', 'tokenizer-corpus.txt');

export interface TinyModelOptions {
  vocabSize?: number;
  hiddenSize?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediateSize?: number;
  tied?: boolean;
  ropeTheta?: number;
  rmsNormEps?: number;
  seed?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
}

/** Writes a random tiny LLaMA with a byte-level BPE tokenizer into `dir`; returns its config. */
export function createTinyModel(dir: string, o: TinyModelOptions = {}): LlamaConfig {
  mkdirSync(dir, { recursive: true });
  const text = readFileSync(TOKENIZER_CORPUS, 'utf8');
  const tokJson = trainByteLevelBpe([text], { vocabSize: o.vocabSize ?? 384, specialTokens: SPECIAL_TOKENS });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigFor({ modelMaxLength: 512 })));
  const vocab = Object.keys((tokJson as { model: { vocab: Record<string, number> } }).model.vocab).length;
  const heads = o.heads ?? 4;
  const hidden = o.hiddenSize ?? 32;
  const config: LlamaConfig = {
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: o.intermediateSize ?? 64,
    numHiddenLayers: o.layers ?? 4,
    numAttentionHeads: heads,
    numKeyValueHeads: o.kvHeads ?? 2,
    headDim: hidden / heads,
    rmsNormEps: o.rmsNormEps ?? 1e-5,
    ropeTheta: o.ropeTheta ?? 10000,
    tieWordEmbeddings: o.tied ?? false,
    maxPositionEmbeddings: 512,
    attentionBias: false,
    mlpBias: false,
    bosTokenId: 1,
    eosTokenId: 2,
    padTokenId: 3,
    hiddenAct: 'silu',
  };
  const vars = initLlamaWeights(config, new Rng(o.seed ?? 7));
  saveModelFolder(dir, config, vars as Map<string, tf.Tensor>, o.dtype ?? 'F32');
  for (const v of vars.values()) v.dispose();
  return config;
}

/** Writes a JSONL classification task with two labels the tiny model can learn (keyword -> label). */
export function writeToyTask(file: string, n: number, seed = 1): void {
  const rng = new Rng(seed);
  const words = ['whale', 'ship', 'sea', 'captain', 'harpoon', 'voyage', 'ocean', 'sailor'];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const spam = rng.next() < 0.5;
    const body = Array.from({ length: 6 }, () => words[rng.int(words.length)]).join(' ');
    const prompt = `${spam ? 'FREE MONEY' : 'Meeting notes'}: ${body}\nAnswer:`;
    lines.push(JSON.stringify({ prompt, completion: spam ? ' spam' : ' ham' }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}
