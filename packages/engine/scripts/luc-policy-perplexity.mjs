// Held-out perplexity of the base model under several LUC policies at two budgets (one Wanda sensitivity
// profile on 8 x 128 training tokens). Run from the repository root after a build, with data/spam made by
// `npx edgetune-engine data spam-assassin --out data/spam`:
//   node packages/engine/scripts/luc-policy-perplexity.mjs
import { initBackend, LlamaModel, loadTokenizer, loadExamples, profileSensitivity, buildPolicy, compressModel } from '../dist/index.js';
import { calibrationFromExamples } from '../dist/tune/run.js';
import { loadPretrainCorpus } from '../dist/pretrain/corpus.js';
import { streamPerplexity, tokenStream } from '../dist/pretrain/pretrain.js';
await initBackend({ quiet: true });
const M = 'models/edgetune-tiny-llama';
const tok = await loadTokenizer(M);
const { examples } = await loadExamples('data/spam/train.jsonl', tok, 256);
const calib = calibrationFromExamples(examples, 8, 128, 'train');
const dense = LlamaModel.load(M);
const sens = profileSensitivity(dense, calib, { method: 'wanda' });
dense.dispose();
const val = tokenStream(tok, loadPretrainCorpus().validation);
const rules = [['uniform', 'uniform'], ['inverse', 'budgeted'], ['owl', 'budgeted'], ['inverse', 'uniform'], ['owl', 'uniform'], ['uniform', 'budgeted']];
for (const [s, b] of [[0.5, 4], [0.6, 3]]) {
  for (const [sr, br] of rules) {
    const p = buildPolicy(sens, { targetSparsity: s, avgBits: b, sparsityRule: sr, bitsRule: br, maxSparsity: 0.8 });
    const m = LlamaModel.load(M);
    compressModel(m, calib, p);
    const r = streamPerplexity(m, val, 128, 8, 32768);
    m.dispose();
    console.log(`budget ${s}/${b} ${sr}+${br}: ppl ${r.perplexity.toFixed(2)} sparsity [${p.sparsity.map((x) => x.toFixed(2))}] bits [${p.bits}]`);
  }
}
