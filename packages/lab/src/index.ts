/**
 * @edgetune/lab: the datasets (SpamAssassin spam/ham and three-class, first names, CMUdict, corpus continuation), pretraining of the default base model,
 * the BPE tokenizer trainer and the benchmarks. Built on the engine; the service never loads it.
 */
export * from './data/spam-assassin.js';
export * from './data/spam-assassin-3.js';
export * from './data/first-names.js';
export * from './data/cmudict.js';
export * from './data/task.js';
export * from './data/corpus-continuation.js';
export * from './data/mime.js';
export * from './pretrain/corpus.js';
export * from './pretrain/pretrain.js';
export * from './tokenizer/bpe-trainer.js';
