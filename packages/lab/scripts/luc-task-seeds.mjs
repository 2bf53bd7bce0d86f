// Task accuracy of LUC policies vs the uniform policy at the same budget, over several tuning seeds
// (one tuning run's test accuracy moves by +-2 points with the seed, so single runs cannot rank policies).
// --task spam (default): the SpamAssassin classification task (data/spam); --task corpus: text continuation
// from the pretraining corpus (data/corpus, `npx edgetune-lab data corpus-continuation --out data/corpus`),
// i.e. recovery tuning, scored by the completions' perplexity.
// Each run: `edgetune-engine tune` (Edge-LLM, round-robin windows, adapted prefix, rank-16 heads) on the
// compressed default model, then `eval` on the test split. Runs already finished (runs/<name>/test-eval.json)
// are reused, so the script resumes. From the repository root after a build, with data/spam made by
// `npx edgetune-lab data spam-assassin --out data/spam`:
//   node packages/lab/scripts/luc-task-seeds.mjs [--sparsity 0.6 --bits 3 --steps 1200 --seeds 1,2,3
//     --rules uniform/uniform,owl/budgeted,none/none --out bench/results/luc-task-seeds.json]   (none/none: uncompressed)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({
  options: {
    sparsity: { type: 'string', default: '0.6' },
    bits: { type: 'string', default: '3' },
    steps: { type: 'string', default: '1200' },
    seeds: { type: 'string', default: '1,2,3' },
    rules: { type: 'string', default: 'uniform/uniform,owl/budgeted' },
    tag: { type: 'string', default: 'a' },
    out: { type: 'string' },
    task: { type: 'string', default: 'spam' },
  },
});
const cli = ['packages/engine/bin/edgetune-engine.js'];
const M = 'models/edgetune-tiny-llama';
if (v.task !== 'spam' && v.task !== 'corpus') throw new Error('--task is spam or corpus');
const data = `data/${v.task}`,
  maxLength = v.task === 'spam' ? '192' : '160',
  task = v.task === 'spam' ? '' : `${v.task}-`;
mkdirSync('runs', { recursive: true });
const results = [];
for (const seed of v.seeds.split(',')) {
  for (const pair of v.rules.split(',')) {
    const [sr, br] = pair.split('/');
    // The budget and steps are in the name: a run is reused only for the same settings. `none/none` is the
    // uncompressed model (the headroom: how much any policy could recover), shared by every budget.
    const dense = sr === 'none';
    const out = dense
      ? `runs/${task}dense-${v.steps}-s${seed}`
      : `runs/${task}luc-${v.tag}-${v.sparsity}-${v.bits}b-${v.steps}-${sr}-${br}-s${seed}`;
    if (!existsSync(`${out}/test-eval.json`)) {
      const tune = [
        'tune',
        '--model',
        M,
        '--train',
        `${data}/train.jsonl`,
        '--val',
        `${data}/validation.jsonl`,
        '--out',
        out,
        '--steps',
        v.steps,
        '--batch',
        '8',
        '--max-length',
        maxLength,
        '--lr',
        '2e-3',
        '--lora-r',
        '8',
        '--lora-alpha',
        '16',
        '--prefix',
        'adapted',
        '--schedule',
        'round_robin',
        '--head-rank',
        '16',
        '--seed',
        seed,
        ...(dense ? [] : ['--sparsity', v.sparsity, '--avg-bits', v.bits, '--sparsity-rule', sr, '--bits-rule', br]),
      ];
      const t = spawnSync('node', [...cli, ...tune], { stdio: ['ignore', 'ignore', 'inherit'] });
      if (t.status !== 0) throw new Error(`tune failed: ${out}`);
      const e = spawnSync('node', [...cli, 'eval', '--model', M, '--adapter', out, '--data', `${data}/test.jsonl`, '--json'], {
        encoding: 'utf8',
        maxBuffer: 1 << 26,
      });
      if (e.status !== 0) throw new Error(`eval failed: ${out}\n${e.stderr}`);
      writeFileSync(`${out}/test-eval.json`, e.stdout);
    }
    const ev = JSON.parse(readFileSync(`${out}/test-eval.json`, 'utf8'));
    const metrics = JSON.parse(readFileSync(`${out}/metrics.json`, 'utf8'));
    const rule = ev.votingRule;
    results.push({
      sparsity_rule: sr,
      bits_rule: br,
      seed: Number(seed),
      voting_rule: rule,
      test_voted: ev.voted[rule].accuracy,
      test_label_loss: ev.voted[rule].loss,
      test_perplexity: ev.voted[rule].perplexity,
      test_exits: ev.perExit.map((p) => ({ layer: p.layer, accuracy: p.accuracy, perplexity: p.perplexity })),
      validation_voted: metrics.validation?.voted?.[rule]?.accuracy ?? null,
    });
    console.log(
      `${out}: test voted ${ev.voted[rule].accuracy === null ? '-' : (100 * ev.voted[rule].accuracy).toFixed(2)}% (${rule}), label loss ${ev.voted[rule].loss.toFixed(4)}, perplexity ${ev.voted[rule].perplexity.toFixed(3)}`,
    );
  }
}
const stats = (xs) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, sd: Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1)) };
};
const summary = v.rules.split(',').map((pair) => {
  const rs = results.filter((r) => `${r.sparsity_rule}/${r.bits_rule}` === pair);
  const acc = stats(rs.map((r) => 100 * (r.test_voted ?? NaN))),
    loss = stats(rs.map((r) => r.test_label_loss)),
    ppl = stats(rs.map((r) => r.test_perplexity));
  console.log(
    `${pair}: test voted ${acc.mean.toFixed(2)} +- ${acc.sd.toFixed(2)}% over ${rs.length} seeds, label loss ${loss.mean.toFixed(4)} +- ${loss.sd.toFixed(4)}, perplexity ${ppl.mean.toFixed(3)} +- ${ppl.sd.toFixed(3)}`,
  );
  return {
    rules: pair,
    seeds: rs.length,
    test_voted_mean: acc.mean,
    test_voted_sd: acc.sd,
    label_loss_mean: loss.mean,
    label_loss_sd: loss.sd,
    perplexity_mean: ppl.mean,
    perplexity_sd: ppl.sd,
  };
});
if (v.out)
  writeFileSync(
    v.out,
    `${JSON.stringify(
      {
        date: new Date().toISOString().slice(0, 10),
        command: `node packages/lab/scripts/luc-task-seeds.mjs ${process.argv.slice(2).join(' ')}`,
        task: v.task,
        budget: { target_sparsity: Number(v.sparsity), avg_bits: Number(v.bits) },
        steps: Number(v.steps),
        summary,
        runs: results,
      },
      null,
      2,
    )}\n`,
  );
