/**
 * Pretraining a small LLaMA-architecture model from scratch with the engine itself (full-parameter
 * causal-LM training, AdamW, cosine schedule), and the unigram baseline its perplexity is compared to.
 * Output is a Hugging Face folder: config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json, generation_config.json, README.md (model card), pretrain_report.json.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LlamaModel } from '@edgetune/engine';
import type { LlamaConfig } from '@edgetune/core';
import { initLlamaWeights, saveModelFolder, tokenizerFromJson, type EngineTokenizer } from '@edgetune/engine';
import { trainByteLevelBpe, tokenizerConfigFor } from '../tokenizer/bpe-trainer.js';
import { sparseSoftmaxCrossEntropy } from '@edgetune/engine';
import { Rng } from '@edgetune/engine';
import { AdamW, clipByGlobalNorm, scheduledLr } from '@edgetune/engine';
import { loadPretrainCorpus, type Corpus } from './corpus.js';

/** Architecture and training settings; sizes in elements, seq in tokens, time in ms. */
export interface PretrainOptions {
  outDir: string;
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediateSize: number;
  tieWordEmbeddings: boolean;
  ropeTheta: number;
  /** training window, tokens */
  seq: number;
  batch: number;
  steps: number;
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** characters of training text used to learn the BPE merges */
  tokenizerChars: number;
  /** validation tokens scored for perplexity */
  evalTokens: number;
  /** use only the first documents up to this many characters of training text (validation: a tenth); 0 = all */
  corpusChars?: number;
  /** stop early (still cosine-annealed to the planned steps) after this many ms; 0 = no limit */
  timeBudgetMs: number;
  /** dtype of model.safetensors */
  saveDtype: 'F32' | 'F16' | 'BF16';
  /** the command line that reproduces the run, for the model card */
  command?: string;
  onStep?: (r: { step: number; steps: number; loss: number; lr: number; tokensPerSec: number; etaMs: number }) => void;
  log?: (s: string) => void;
}

export const DEFAULT_PRETRAIN: Omit<PretrainOptions, 'outDir'> = {
  vocabSize: 4096,
  hiddenSize: 192,
  layers: 8,
  heads: 4,
  kvHeads: 2,
  intermediateSize: 512,
  tieWordEmbeddings: true,
  ropeTheta: 10000,
  seq: 256,
  batch: 8,
  steps: 1400,
  lr: 3e-3,
  warmupSteps: 100,
  weightDecay: 0.1,
  seed: 1234,
  tokenizerChars: 20_000_000,
  evalTokens: 65536,
  timeBudgetMs: 0,
  saveDtype: 'F32',
};

export const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>'];

/**
 * Concatenates documents into one id stream, each as bos + text + eos, so the model sees bos the way
 * tuning prompts start (encodePrompt puts bos in front).
 */
export function tokenStream(tok: EngineTokenizer, docs: { text: string }[]): Int32Array {
  const parts: number[][] = [];
  let n = 0;
  for (const d of docs) {
    const ids = tok.encode(d.text, { addSpecialTokens: false });
    if (tok.bosId !== null) ids.unshift(tok.bosId);
    if (tok.eosId !== null) ids.push(tok.eosId);
    parts.push(ids);
    n += ids.length;
  }
  const out = new Int32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Perplexity of an add-one-smoothed unigram model fit on `train`, evaluated on `val`:
 * exp(-mean log p(token)). The baseline a real language model must beat.
 */
export function unigramPerplexity(train: Int32Array, val: Int32Array, vocab: number): number {
  const counts = new Float64Array(vocab).fill(1);
  for (const t of train) counts[t]++;
  const total = train.length + vocab;
  let nll = 0;
  for (const t of val) nll -= Math.log(counts[t] / total);
  return Math.exp(nll / val.length);
}

/** Mean causal-LM loss of `model` over windows of `val` (no gradient). */
export function streamPerplexity(
  model: LlamaModel,
  val: Int32Array,
  seq: number,
  batch: number,
  maxTokens: number,
): { loss: number; perplexity: number; tokens: number } {
  let nll = 0,
    count = 0;
  const windows: number[] = [];
  for (let s = 0; s + seq + 1 <= val.length && windows.length * seq < maxTokens; s += seq) windows.push(s);
  for (let i = 0; i < windows.length; i += batch) {
    const ws = windows.slice(i, i + batch);
    const loss = tf.tidy(() => {
      const ids = tf.tensor1d(Int32Array.from(ws.flatMap((s) => Array.from(val.subarray(s, s + seq)))), 'int32');
      const tgt = tf.tensor1d(Int32Array.from(ws.flatMap((s) => Array.from(val.subarray(s + 1, s + seq + 1)))), 'int32');
      const ctx = model.context({ batch: ws.length, seq });
      let h = model.embed(ids);
      for (let l = 0; l < model.layers.length; l++) h = model.layer(l, h, ctx, false);
      const logits = model.headLogits(model.rmsNorm(h, model.finalNorm));
      return sparseSoftmaxCrossEntropy(logits, tgt).dataSync()[0];
    });
    nll += loss * ws.length * seq;
    count += ws.length * seq;
  }
  return { loss: nll / count, perplexity: Math.exp(nll / count), tokens: count };
}

export interface PretrainReport {
  params: number;
  steps: number;
  trainTokensSeen: number;
  trainMs: number;
  tokensPerSec: number;
  finalTrainLoss: number;
  validation: { tokens: number; loss: number; perplexity: number; unigramPerplexity: number };
  corpus: {
    description: string;
    license: string;
    trainDocs: number;
    validationDocs: number;
    trainTokens: number;
    validationTokens: number;
  };
}

/** Trains tokenizer and model, writes the HF folder, returns the report. */
export async function pretrain(o: PretrainOptions): Promise<PretrainReport> {
  const log = o.log ?? (() => {});
  const corpus: Corpus = loadPretrainCorpus();
  if (o.corpusChars) {
    const cap = (docs: Corpus['train'], n: number) => {
      let c = 0;
      return docs.filter((d) => (c += d.text.length) - d.text.length < n);
    };
    corpus.train = cap(corpus.train, o.corpusChars);
    corpus.validation = cap(corpus.validation, o.corpusChars / 10);
  }
  mkdirSync(o.outDir, { recursive: true });
  // 1. Tokenizer: byte-level BPE learned on the first `tokenizerChars` of training text.
  const texts: string[] = [];
  let chars = 0;
  for (const d of corpus.train) {
    if (chars >= o.tokenizerChars) break;
    texts.push(d.text);
    chars += d.text.length;
  }
  const tBpe = performance.now();
  const tokJson = trainByteLevelBpe(texts, { vocabSize: o.vocabSize, specialTokens: SPECIAL_TOKENS });
  const tokCfg = tokenizerConfigFor({ bosToken: '<s>', eosToken: '</s>', padToken: '<pad>', unkToken: '<unk>', modelMaxLength: 1024 });
  writeFileSync(join(o.outDir, 'tokenizer.json'), JSON.stringify(tokJson));
  writeFileSync(join(o.outDir, 'tokenizer_config.json'), `${JSON.stringify(tokCfg, null, 2)}\n`);
  const tok = tokenizerFromJson(tokJson, tokCfg);
  log(`tokenizer: ${tok.vocabSize} tokens from ${(chars / 1e6).toFixed(1)} M chars in ${((performance.now() - tBpe) / 1000).toFixed(1)} s`);
  const train = tokenStream(tok, corpus.train),
    val = tokenStream(tok, corpus.validation);
  log(`corpus: ${train.length} train tokens, ${val.length} validation tokens`);
  // 2. Model.
  const config: LlamaConfig = {
    vocabSize: tok.vocabSize,
    hiddenSize: o.hiddenSize,
    intermediateSize: o.intermediateSize,
    numHiddenLayers: o.layers,
    numAttentionHeads: o.heads,
    numKeyValueHeads: o.kvHeads,
    headDim: o.hiddenSize / o.heads,
    rmsNormEps: 1e-5,
    ropeTheta: o.ropeTheta,
    tieWordEmbeddings: o.tieWordEmbeddings,
    maxPositionEmbeddings: 1024,
    attentionBias: false,
    mlpBias: false,
    bosTokenId: tok.bosId,
    eosTokenId: tok.eosId,
    padTokenId: tok.padId,
    hiddenAct: 'silu',
  };
  const rng = new Rng(o.seed);
  const vars = initLlamaWeights(config, rng);
  const model = new LlamaModel(config, vars as Map<string, tf.Tensor>);
  const varList = [...vars.values()];
  const decayed = new Set([...vars.entries()].filter(([n]) => !n.endsWith('norm.weight')).map(([, v]) => v.name));
  const optDecay = new AdamW({ lr: o.lr, weightDecay: o.weightDecay, beta2: 0.95 });
  const optNoDecay = new AdamW({ lr: o.lr, weightDecay: 0, beta2: 0.95 });
  log(`model: ${(model.paramCount() / 1e6).toFixed(2)} M params`);
  // 3. Train on random windows.
  const t0 = performance.now();
  let step = 0,
    lastLoss = NaN,
    seen = 0;
  for (; step < o.steps; step++) {
    if (o.timeBudgetMs && performance.now() - t0 > o.timeBudgetMs) break;
    const starts = Array.from({ length: o.batch }, () => rng.int(train.length - o.seq - 1));
    const ids = tf.tensor1d(Int32Array.from(starts.flatMap((s) => Array.from(train.subarray(s, s + o.seq)))), 'int32');
    const tgt = tf.tensor1d(Int32Array.from(starts.flatMap((s) => Array.from(train.subarray(s + 1, s + o.seq + 1)))), 'int32');
    const ctx = model.context({ batch: o.batch, seq: o.seq });
    const { value, grads } = tf.variableGrads(() => {
      let h = model.embed(ids);
      for (let l = 0; l < model.layers.length; l++) h = model.layer(l, h, ctx, false);
      const logits = model.headLogits(model.rmsNorm(h, model.finalNorm));
      return sparseSoftmaxCrossEntropy(logits, tgt);
    }, varList);
    lastLoss = value.dataSync()[0];
    clipByGlobalNorm(grads, 1.0);
    const lr = scheduledLr(o.lr, step, o.steps, o.warmupSteps, 'cosine');
    optDecay.apply(
      varList.filter((v) => decayed.has(v.name)),
      grads,
      lr,
    );
    optNoDecay.apply(
      varList.filter((v) => !decayed.has(v.name)),
      grads,
      lr,
    );
    tf.dispose([value, ids, tgt, ...Object.values(grads)]);
    seen += o.batch * o.seq;
    const ms = performance.now() - t0;
    o.onStep?.({
      step: step + 1,
      steps: o.steps,
      loss: lastLoss,
      lr,
      tokensPerSec: seen / (ms / 1000),
      etaMs: (ms / (step + 1)) * (o.steps - step - 1),
    });
  }
  const trainMs = performance.now() - t0;
  // 4. Evaluate against the unigram baseline.
  const ev = streamPerplexity(model, val, o.seq, o.batch, o.evalTokens);
  const uni = unigramPerplexity(train, val.subarray(0, ev.tokens + 1), config.vocabSize);
  log(`validation perplexity ${ev.perplexity.toFixed(2)} vs unigram ${uni.toFixed(2)} on ${ev.tokens} tokens`);
  // 5. Save.
  saveModelFolder(o.outDir, config, vars, o.saveDtype);
  const report: PretrainReport = {
    params: model.paramCount(),
    steps: step,
    trainTokensSeen: seen,
    trainMs,
    tokensPerSec: seen / (trainMs / 1000),
    finalTrainLoss: lastLoss,
    validation: { tokens: ev.tokens, loss: ev.loss, perplexity: ev.perplexity, unigramPerplexity: uni },
    corpus: {
      description: corpus.description,
      license: corpus.license,
      trainDocs: corpus.train.length,
      validationDocs: corpus.validation.length,
      trainTokens: train.length,
      validationTokens: val.length,
    },
  };
  writeFileSync(
    join(o.outDir, 'pretrain_report.json'),
    `${JSON.stringify({ options: { ...o, onStep: undefined, log: undefined }, report }, null, 2)}\n`,
  );
  writeFileSync(join(o.outDir, 'README.md'), modelCard(config, o, report));
  optDecay.dispose();
  optNoDecay.dispose();
  model.dispose();
  return report;
}

function modelCard(c: LlamaConfig, o: PretrainOptions, r: PretrainReport): string {
  return `---
license: apache-2.0
library_name: edgetune
tags: [llama, edgetune, tiny]
---
# ${basename(o.outDir)}

A small LLaMA-architecture causal language model (\`LlamaForCausalLM\`), pretrained from scratch on CPU by
edgetune's own TensorFlow.js engine, as a base model of edgetune's tuning service: small enough to tune on a
2-core box, big enough to be a real language model.

| | |
|---|---|
| parameters | ${(r.params / 1e6).toFixed(2)} M (${c.numHiddenLayers} layers, hidden ${c.hiddenSize}, ${c.numAttentionHeads} query heads sharing ${c.numKeyValueHeads} key/value heads, SwiGLU ${c.intermediateSize}, RoPE theta ${c.ropeTheta}, ${c.tieWordEmbeddings ? 'tied' : 'untied'} embeddings) |
| tokenizer | byte-level BPE, ${c.vocabSize} tokens (incl. ${SPECIAL_TOKENS.join(' ')}), learned by edgetune on the training text |
| training data | ${r.corpus.description}; ${r.corpus.trainDocs} training documents, ${r.corpus.trainTokens} tokens |
| data license | ${r.corpus.license} |
| training | ${r.steps} steps x ${o.batch} x ${o.seq} tokens (${r.trainTokensSeen} tokens seen), AdamW lr ${o.lr} cosine, warmup ${o.warmupSteps}, weight decay ${o.weightDecay}, seed ${o.seed}; ${(r.trainMs / 60000).toFixed(1)} min at ${Math.round(r.tokensPerSec)} tokens/s |
| validation | ${r.corpus.validationDocs} held-out documents (hash split), ${r.validation.tokens} tokens: **perplexity ${r.validation.perplexity.toFixed(2)}** vs **${r.validation.unigramPerplexity.toFixed(2)}** for an add-one unigram model of the training tokens |
| weights | model.safetensors, ${o.saveDtype} |

## Reproduce

\`\`\`
${o.command ?? 'npx edgetune-lab pretrain --out models/edgetune-tiny-llama'}
\`\`\`

## Limits

Trained on a few million tokens of 19th-21st century English prose and speeches: it continues text in that style
and knows nothing else. It is meant to be adapted (e.g. the SpamAssassin classification task), not used as is.
`;
}
