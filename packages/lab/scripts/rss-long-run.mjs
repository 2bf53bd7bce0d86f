// Memory over a long tuning run, logged every 100 steps: process RSS, V8 heap, external buffers, TF.js bytes
// and the wasm heap (which never shrinks). Finds what grows when a long run's peak RSS exceeds the planner's
// forecast. Defaults: the bench's Edge-LLM settings (micro-batch 8, max length 192, round-robin windows,
// adapted prefix, rank-16 exit heads) on the SpamAssassin split (`npx edgetune-lab data spam-assassin --out data/spam`).
//   node packages/lab/scripts/rss-long-run.mjs [STEPS=3576] [MODE=edge_llm] [LOG=rss-long-run.jsonl]
import { mkdtempSync, appendFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, memoryStats, runTuning } from '@edgetune/engine';

const steps = Number(process.argv[2] ?? 3576),
  mode = process.argv[3] ?? 'edge_llm',
  log = process.argv[4] ?? 'rss-long-run.jsonl';
appendFileSync(log, `${JSON.stringify({ step: 0, rss: process.memoryUsage.rss() })}\n`);
await initBackend();
const snap = (step) => {
  const m = process.memoryUsage(),
    s = memoryStats();
  appendFileSync(
    log,
    `${JSON.stringify({
      step,
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      tf: s.tfBytes,
      wasm: s.wasmHeapBytes,
    })}\n`,
  );
};
const out = mkdtempSync(join(tmpdir(), 'rss-long-run-'));
const r = await runTuning({
  modelDir: 'models/edgetune-tiny-llama',
  trainFile: 'data/spam/train.jsonl',
  validationFile: 'data/spam/validation.jsonl',
  outDir: out,
  maxLength: 192,
  tune: {
    mode,
    steps,
    microBatch: 8,
    lr: 0.002,
    seed: 42,
    warmupSteps: 10,
    measureMemory: 10,
    lora: { r: 8, alpha: 16, dropout: 0.05 },
    schedule: 'round_robin',
    headRank: 16,
    prefix: 'adapted',
  },
  onStep: (s) => {
    if (s.step === 1 || s.step % 100 === 0) snap(s.step);
  },
});
snap(-1); // after validation
rmSync(out, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ steps, mode, peakRssBytes: r.peakRssBytes })}\n`);
