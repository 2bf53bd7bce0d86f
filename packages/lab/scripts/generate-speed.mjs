// Generation speed with and without the KV cache, side by side in one process: tokens/s of `generate()`
// rerunning the whole context at every token (`kvCache: false`) and of the cached path (prefill once,
// then one token per step), greedy, at a 256-token context, 32 new tokens, on the plain path (final norm
// + lm_head) and on four exits voted with `max` (layers 1, 3, 5, 7, each read through the final norm and
// lm_head). Runs alternate between the two so both see the same machine load; each figure is the median
// of --reps (best_speedup: fastest run against fastest run). Tokens/s count the whole call (prompt forward
// included); the `decode` figures leave out the first token (timed alone: the prompt forward or prefill).
// Both must give the same tokens. Run from the repository root after a build (`npx tsc -b`):
//   node packages/lab/scripts/generate-speed.mjs [--context 256] [--new 32] [--reps 3] [--out FILE.json] [--note TEXT]
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { backendInfo, generate, initBackend, LlamaModel, loadTokenizer, plainPath } from '@edgetune/engine';

const { values: v } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/edgetune-tiny-llama' },
    text: { type: 'string', default: 'tests/fixtures/text/tokenizer-corpus.txt' },
    context: { type: 'string', default: '256' },
    new: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    out: { type: 'string' },
    note: { type: 'string' },
  },
});
const contextTokens = Number(v.context),
  newTokens = Number(v.new),
  reps = Number(v.reps);

const load0 = loadavg()[0];
await initBackend({ quiet: true });
const model = LlamaModel.load(v.model);
const tok = await loadTokenizer(v.model);
const ids = tok.encode(readFileSync(v.text, 'utf8'), { addSpecialTokens: false }).slice(0, contextTokens);
if (ids.length < contextTokens) throw new Error(`${v.text} has only ${ids.length} tokens`);

const plain = plainPath(model);
const setups = [
  { name: 'plain path', paths: [plain], rule: 'max' },
  { name: '4 exits, max vote', paths: [1, 3, 5, 7].map((layer) => ({ ...plain, layer })), rule: 'max' },
];

/** One timed generation: seconds and tokens (no stop token, so always `n`). */
function run(paths, rule, kvCache, n = newTokens) {
  const t0 = performance.now();
  const out = generate(model, paths, ids, { maxNewTokens: n, rule, kvCache });
  return { s: (performance.now() - t0) / 1000, out };
}
/** An argument as a POSIX shell word. */
const shellQuote = (a) => (/^[\w./=,:-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const results = [];
for (const { name, paths, rule } of setups) {
  // Warm-up: kernels, RoPE tables and wasm heap growth outside the timed runs.
  run(paths, rule, false);
  run(paths, rule, true);
  const rerun = [],
    cached = [],
    rerunFirst = [],
    cachedFirst = [];
  let same = true;
  for (let r = 0; r < reps; r++) {
    const a = run(paths, rule, false),
      b = run(paths, rule, true);
    rerun.push(a.s);
    cached.push(b.s);
    same &&= a.out.length === b.out.length && a.out.every((x, i) => x === b.out[i]);
    // The first token alone (prompt forward / prefill): the rest of the time is the per-token decoding.
    rerunFirst.push(run(paths, rule, false, 1).s);
    cachedFirst.push(run(paths, rule, true, 1).s);
  }
  const decode = (all, first) => (newTokens - 1) / Math.max(median(all) - median(first), 1e-9);
  const row = {
    setup: name,
    exit_layers: paths.map((p) => p.layer),
    rule,
    rerun_tokens_per_s: newTokens / median(rerun),
    cached_tokens_per_s: newTokens / median(cached),
    speedup: median(rerun) / median(cached),
    rerun_decode_tokens_per_s: decode(rerun, rerunFirst),
    cached_decode_tokens_per_s: decode(cached, cachedFirst),
    decode_speedup: decode(cached, cachedFirst) / decode(rerun, rerunFirst),
    // the least-disturbed run of each (the machine is shared)
    best_speedup: Math.min(...rerun) / Math.min(...cached),
    rerun_seconds: rerun,
    cached_seconds: cached,
    rerun_first_token_seconds: rerunFirst,
    cached_first_token_seconds: cachedFirst,
    same_tokens: same,
  };
  results.push(row);
  const f = (x) => x.toFixed(1);
  console.log(
    `${name}: rerun ${f(row.rerun_tokens_per_s)} tok/s, cached ${f(row.cached_tokens_per_s)} tok/s (x${f(row.speedup)}); ` +
      `after the first token: ${f(row.rerun_decode_tokens_per_s)} vs ${f(row.cached_decode_tokens_per_s)} tok/s (x${f(row.decode_speedup)}); same tokens: ${same}`,
  );
}
model.dispose();

const report = {
  date: new Date().toISOString().slice(0, 10),
  command: ['node', 'packages/lab/scripts/generate-speed.mjs', ...process.argv.slice(2)].map(shellQuote).join(' '),
  model: v.model,
  context_tokens: contextTokens,
  new_tokens: newTokens,
  reps,
  backend: backendInfo(),
  machine: {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    loadavg_1m_at_start: load0,
    loadavg_1m_at_end: loadavg()[0],
    node: process.version,
  },
  ...(v.note ? { note: v.note } : {}),
  results,
};
if (v.out) writeFileSync(v.out, `${JSON.stringify(report, null, 2)}\n`);
