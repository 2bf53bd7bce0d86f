// Held-out perplexity and zero-shot last-word accuracy (LAMBADA-style, 64-token context, every sentence-final
// word of the pretraining corpus's validation split; sign test against the uniform policy on the same items)
// of the base model under several LUC policies at several budgets (one Wanda sensitivity profile on 8 x 128
// training tokens). Run from the repository root after a build, with data/spam made by
// `npx edgetune-lab data spam-assassin --out data/spam`:
//   node packages/lab/scripts/luc-policy-perplexity.mjs [--budgets 0.5/4,0.6/3,0.7/3,0.7/4] [--out FILE.json]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  initBackend,
  LlamaModel,
  loadTokenizer,
  loadExamples,
  profileSensitivity,
  buildPolicy,
  compressModel,
  calibrationFromExamples,
  lastWordItems,
  lastWordAccuracy,
  pairedSignTest,
} from '@edgetune/engine';
import { loadPretrainCorpus } from '../dist/pretrain/corpus.js';
import { streamPerplexity, tokenStream } from '../dist/pretrain/pretrain.js';
const { values: v } = parseArgs({ options: { budgets: { type: 'string', default: '0.5/4,0.6/3' }, out: { type: 'string' } } });
await initBackend({ quiet: true });
const M = 'models/edgetune-tiny-llama';
const tok = await loadTokenizer(M);
const { examples } = await loadExamples('data/spam/train.jsonl', tok, 256);
const calib = calibrationFromExamples(examples, 8, 128, 'train');
const dense = LlamaModel.load(M);
const sens = profileSensitivity(dense, calib, { method: 'wanda' });
dense.dispose();
const val = tokenStream(tok, loadPretrainCorpus().validation);
const items = lastWordItems(tok, loadPretrainCorpus().validation, { contextTokens: 64 });
const rules = [
  ['uniform', 'uniform'],
  ['inverse', 'budgeted'],
  ['owl', 'budgeted'],
  ['inverse', 'uniform'],
  ['owl', 'uniform'],
  ['uniform', 'budgeted'],
];
const rows = [];
const base = LlamaModel.load(M);
const densePpl = streamPerplexity(base, val, 128, 8, 32768).perplexity;
const denseLw = lastWordAccuracy(base, items);
base.dispose();
console.log(`dense: ppl ${densePpl.toFixed(2)}, last-word ${(denseLw.accuracy * 100).toFixed(2)}% of ${items.length}`);
for (const [s, b] of v.budgets.split(',').map((x) => x.split('/').map(Number))) {
  let uniformCorrect;
  for (const [sr, br] of rules) {
    const p = buildPolicy(sens, { targetSparsity: s, avgBits: b, sparsityRule: sr, bitsRule: br, maxSparsity: 0.8 });
    const m = LlamaModel.load(M);
    compressModel(m, calib, p);
    const r = streamPerplexity(m, val, 128, 8, 32768);
    const lw = lastWordAccuracy(m, items);
    m.dispose();
    uniformCorrect ??= lw.correct; // rules[0] is uniform/uniform
    const t = pairedSignTest(lw.correct, uniformCorrect);
    console.log(
      `budget ${s}/${b} ${sr}+${br}: ppl ${r.perplexity.toFixed(2)}, last-word ${(lw.accuracy * 100).toFixed(2)}% (vs uniform: +${t.aOnly} -${t.bOnly}, p=${t.p.toPrecision(2)}) sparsity [${p.sparsity.map((x) => x.toFixed(2))}] bits [${p.bits}]`,
    );
    rows.push({
      target_sparsity: s,
      avg_bits: b,
      sparsity_rule: sr,
      bits_rule: br,
      perplexity: r.perplexity,
      last_word_accuracy: lw.accuracy,
      last_word_mean_logprob: lw.meanLogProb,
      vs_uniform: { only_this: t.aOnly, only_uniform: t.bOnly, sign_test_p: t.p },
      sparsity: p.sparsity,
      bits: p.bits,
    });
  }
}
if (v.out)
  writeFileSync(
    v.out,
    `${JSON.stringify(
      {
        date: new Date().toISOString().slice(0, 10),
        command: `node packages/lab/scripts/luc-policy-perplexity.mjs ${process.argv.slice(2).join(' ')}`,
        dense: densePpl,
        dense_last_word_accuracy: denseLw.accuracy,
        last_word_items: items.length,
        policies: rows,
      },
      null,
      2,
    )}\n`,
  );
