// TF.js peak of a training step against the number of scored positions per example (the same 8 x 128-token
// micro-batches, labels on the last k tokens), for the three exit-head kinds: Edge-LLM with rank-16 heads
// (shared lm_head + LoRA), Edge-LLM with full heads, vanilla LoRA (lm_head). Prints the slope as vocab-wide
// float32 rows per scored row: the planner's HEAD_ROW_TENSORS (@edgetune/core schedule/planner.ts). Each
// point runs in a fresh process. From the repository root after a build:
//   node packages/lab/scripts/labelled-rows-memory.mjs
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const T = 128,
  mb = 8,
  K = [2, 64];
if (process.argv[2] === '--one') {
  const [k, mode, headRank] = process.argv.slice(3).map((x, i) => (i === 1 ? x : Number(x)));
  const tf = await import('@tensorflow/tfjs-core');
  const { initBackend, LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, Rng } = await import('@edgetune/engine');
  await initBackend({ quiet: true });
  const model = LlamaModel.load('models/edgetune-tiny-llama');
  const V = model.config.vocabSize,
    rng = new Rng(1);
  const ex = Array.from({ length: 64 }, () => {
    const ids = Array.from({ length: T }, () => 4 + rng.int(V - 4));
    return { inputIds: ids, labels: ids.map((x, t) => (t >= T - k ? x : -100)) };
  });
  const kind = mode === 'vanilla' ? { mode: 'vanilla' } : { mode: 'edge_llm', schedule: 'round_robin', headRank, prefix: 'adapted' };
  const t = new AdaptiveTrainer(model, ex, { ...DEFAULT_TUNE, ...kind, steps: 1000, microBatch: mb, lora: { ...DEFAULT_LORA, r: 8 } }, 0);
  for (let i = 0; i < 4; i++) await t.step(); // every window once
  let peak = 0;
  for (let i = 0; i < 4; i++) {
    const info = await tf.profile(async () => {
      await t.step();
    });
    peak = Math.max(peak, info.peakBytes);
  }
  process.stdout.write(`${JSON.stringify({ peak, V })}\n`);
} else {
  const self = fileURLToPath(import.meta.url);
  const rows = {};
  for (const [name, mode, hr] of [
    ['lowRank', 'edge_llm', 16],
    ['full', 'edge_llm', 0],
    ['vanilla', 'vanilla', 0],
  ]) {
    const pts = K.map((k) =>
      JSON.parse(
        spawnSync(process.execPath, [self, '--one', String(k), mode, String(hr)], { encoding: 'utf8' })
          .stdout.trim()
          .split('\n')
          .pop(),
      ),
    );
    const perRow = (pts[1].peak - pts[0].peak) / (mb * (K[1] - K[0]));
    rows[name] = {
      peakMiB: pts.map((p) => +(p.peak / 2 ** 20).toFixed(2)),
      bytesPerScoredRow: Math.round(perRow),
      vocabRowsPerScoredRow: +(perRow / (4 * pts[0].V)).toFixed(2),
    };
  }
  process.stdout.write(`${JSON.stringify({ microBatch: mb, tokens: T, scoredPerExample: K, rows }, null, 2)}\n`);
}
