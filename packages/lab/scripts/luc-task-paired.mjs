// Paired comparison of LUC vs the uniform policy on task accuracy, per tuning seed (the same seed gives
// both runs the same data order and initialisation, so the per-seed difference removes most of the
// +-2-point seed noise). Reads luc-task-seeds.mjs result files; where a seed appears in several files
// the later file wins (pairs are only formed within one file: both runs of a pair from one machine).
// --metric perplexity compares the voted perplexity of the completions instead (lower is better; the corpus
// continuation task, whose completions are free text); --rules none/none compares the uncompressed model.
//   node packages/lab/scripts/luc-task-paired.mjs --rules owl/budgeted [--metric accuracy|perplexity] --out FILE.json RESULTS.json ...
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pairedSignTest } from '@edgetune/engine';

const { values: v, positionals: files } = parseArgs({
  allowPositionals: true,
  options: { rules: { type: 'string', default: 'owl/budgeted' }, metric: { type: 'string', default: 'accuracy' }, out: { type: 'string' } },
});
if (v.metric !== 'accuracy' && v.metric !== 'perplexity') throw new Error('--metric is accuracy or perplexity');
const [sr, br] = v.rules.split('/');
const bySeed = new Map();
for (const f of files) {
  const d = JSON.parse(readFileSync(f, 'utf8'));
  const seeds = new Set(d.runs.map((r) => r.seed));
  for (const seed of seeds) {
    const u = d.runs.find((r) => r.seed === seed && r.sparsity_rule === 'uniform' && r.bits_rule === 'uniform');
    const l = d.runs.find((r) => r.seed === seed && r.sparsity_rule === sr && r.bits_rule === br);
    if (u && l)
      bySeed.set(seed, {
        seed,
        file: f,
        uniform: { test: u.test_voted, loss: u.test_label_loss, ppl: u.test_perplexity },
        luc: { test: l.test_voted, loss: l.test_label_loss, ppl: l.test_perplexity },
      });
  }
}
const pairs = [...bySeed.values()].sort((a, b) => a.seed - b.seed);
const n = pairs.length;
if (n < 2) throw new Error('need at least 2 seeds with both policies');
const mean = (a) => a.reduce((s, x) => s + x, 0) / a.length;
const sd = (a) => {
  const m = mean(a);
  return Math.sqrt(a.reduce((s, x) => s + (x - m) ** 2, 0) / (a.length - 1));
};
// Exact two-sided sign test (ties dropped): the engine's paired test on 0/1 outcomes per seed.
const signTest = (d) => {
  const t = pairedSignTest(
    Uint8Array.from(d, (x) => +(x > 0)),
    Uint8Array.from(d, (x) => +(x < 0)),
  );
  return { better: t.aOnly, worse: t.bOnly, p: t.p };
};
// Two-sided p of Student's t with df degrees of freedom (Simpson's rule on the density).
const tP = (t, df) => {
  const logc = lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * Math.log(df * Math.PI),
    f = (x) => Math.exp(logc - ((df + 1) / 2) * Math.log(1 + (x * x) / df));
  const a = Math.abs(t),
    N = 20000,
    h = a / N;
  let s = f(0) + f(a);
  for (let i = 1; i < N; i++) s += (i % 2 ? 4 : 2) * f(i * h);
  return Math.max(0, 1 - (2 * (s * h)) / 3);
};
function lgamma(x) {
  // Lanczos coefficients as published (Numerical Recipes, gammln); their last digits are beyond float64.
  // biome-ignore lint/correctness/noPrecisionLoss: published constants, kept digit for digit
  const g = [76.18009172947146, -86.50532032941677, 24.01409824083091, -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5];
  let y = x,
    tmp = x + 5.5;
  tmp -= (x + 0.5) * Math.log(tmp);
  let ser = 1.000000000190015;
  for (const c of g) ser += c / ++y;
  // biome-ignore lint/correctness/noPrecisionLoss: sqrt(2 pi) as published
  return -tmp + Math.log((2.5066282746310005 * ser) / x);
}
const paired = (d) => {
  const m = mean(d),
    s = sd(d),
    t = m / (s / Math.sqrt(d.length));
  return { mean: m, sd: s, t, p: tP(t, d.length - 1), sign: signTest(d) };
};
// Gain > 0 means the compared rule did better: higher accuracy, or lower perplexity.
const ppl = v.metric === 'perplexity';
const acc = paired(pairs.map((p) => (ppl ? p.uniform.ppl - p.luc.ppl : p.luc.test - p.uniform.test))),
  loss = paired(pairs.map((p) => p.uniform.loss - p.luc.loss));
const result = {
  date: new Date().toISOString(),
  command: `node packages/lab/scripts/luc-task-paired.mjs --rules ${v.rules}${ppl ? ' --metric perplexity' : ''}${v.out ? ` --out ${v.out}` : ''} ${files.join(' ')}`,
  rules: v.rules,
  metric: v.metric,
  seeds: n,
  uniform_test_mean: mean(pairs.map((p) => (ppl ? p.uniform.ppl : p.uniform.test))),
  uniform_test_sd: sd(pairs.map((p) => (ppl ? p.uniform.ppl : p.uniform.test))),
  luc_test_mean: mean(pairs.map((p) => (ppl ? p.luc.ppl : p.luc.test))),
  luc_test_sd: sd(pairs.map((p) => (ppl ? p.luc.ppl : p.luc.test))),
  [ppl ? 'test_perplexity_reduction' : 'test_accuracy_gain']: acc,
  label_loss_reduction: loss,
  pairs,
};
if (v.out) writeFileSync(v.out, `${JSON.stringify(result, null, 2)}\n`);
const pct = ppl ? (x) => x.toFixed(3) : (x) => (100 * x).toFixed(2),
  unit = ppl ? '' : '%';
process.stdout.write(
  `${n} seeds: ${v.rules} ${pct(result.luc_test_mean)} +- ${pct(result.luc_test_sd)}${unit} vs uniform ${pct(result.uniform_test_mean)} +- ${pct(result.uniform_test_sd)}${unit} test ${v.metric}; ` +
    `${ppl ? 'perplexity lower by' : 'gain'} ${pct(acc.mean)}${ppl ? '' : ' points'} (paired t ${acc.t.toFixed(2)}, p ${acc.p.toFixed(4)}; better in ${acc.sign.better}, worse in ${acc.sign.worse}, sign test p ${acc.sign.p.toFixed(4)}); ` +
    `label loss ${loss.mean.toFixed(4)} nats lower (paired t ${loss.t.toFixed(2)}, p ${loss.p.toFixed(4)}; lower in ${loss.sign.better} of ${n}, sign test p ${loss.sign.p.toFixed(4)})\n`,
);
