// Peak RSS and speed of tuning with and without the trainer's V8 heap policy (@edgetune/engine util/v8-heap.ts,
// EDGETUNE_V8_OPTIMIZE_FOR_SIZE), side by side in fresh processes, alternating, each planned for itself
// (forecast vs measured RSS). Settings: the bench's Edge-LLM run (micro-batch 8, max length 192, round-robin
// windows, adapted prefix, rank-16 exit heads) and the bench's quarter-memory plan (tensor budget 77 MB),
// on the SpamAssassin split (`npx edgetune-lab data spam-assassin --out data/spam`).
//   node packages/lab/scripts/rss-v8-policy.mjs [--steps 3576] [--repeats 1] [--out FILE.json]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (k, d) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? process.argv[i + 1] : d;
};
const steps = Number(arg('--steps', 3576)),
  repeats = Number(arg('--repeats', 1)),
  outFile = arg('--out');

if (process.argv[2] === '--child') {
  const { initBackend, runTuning } = await import('@edgetune/engine');
  const budget = Number(process.argv[3]);
  await initBackend({ quiet: true });
  const out = mkdtempSync(join(tmpdir(), 'rss-v8-policy-'));
  let maxHeapTotal = 0;
  const r = await runTuning({
    modelDir: 'models/edgetune-tiny-llama',
    trainFile: 'data/spam/train.jsonl',
    validationFile: 'data/spam/validation.jsonl',
    outDir: out,
    maxLength: 192,
    device: budget ? { tensorBudgetBytes: budget } : {},
    tune: {
      mode: 'edge_llm',
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
    onStep: () => {
      maxHeapTotal = Math.max(maxHeapTotal, process.memoryUsage().heapTotal);
    },
  });
  rmSync(out, { recursive: true, force: true });
  const p = r.plan;
  process.stdout.write(
    `${JSON.stringify({
      peakRssMiB: r.peakRssBytes / 2 ** 20,
      forecastRssMiB: p.plan.forecast.peakRssBytes / 2 ** 20,
      rssError: p.plan.forecast.peakRssBytes / r.peakRssBytes - 1,
      maxHeapTotalMiB: maxHeapTotal / 2 ** 20,
      tokensPerSec: r.tokensPerSec,
      stepMs: p.measured.stepMs,
      forecastStepMs: p.plan.forecast.stepMs,
      microBatch: p.plan.microBatch,
      gradAccum: p.plan.gradAccum,
      accuracy: r.validation?.voted[r.votingRule]?.accuracy ?? null,
    })}\n`,
  );
  process.exit(0);
}

const runs = [];
for (let i = 0; i < repeats; i++) {
  for (const [label, budget] of [
    ['edge_llm', 0],
    ['edge_llm_quarter_memory', 77_000_000],
  ]) {
    for (const favoured of [true, false]) {
      const c = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', String(budget), '--steps', String(steps)], {
        encoding: 'utf8',
        maxBuffer: 1 << 24,
        env: { ...process.env, EDGETUNE_V8_OPTIMIZE_FOR_SIZE: favoured ? '1' : '0' },
      });
      if (c.status !== 0) throw new Error(`child failed: ${c.stderr.slice(-2000)}`);
      const r = { label, v8: favoured ? 'optimize-for-size' : 'default', steps, ...JSON.parse(c.stdout.trim().split('\n').pop()) };
      runs.push(r);
      process.stderr.write(
        `${label} ${r.v8}: peak RSS ${r.peakRssMiB.toFixed(1)} MiB (forecast ${r.forecastRssMiB.toFixed(1)}, ${(100 * r.rssError).toFixed(1)}%), max V8 heap ${r.maxHeapTotalMiB.toFixed(1)} MiB, ${r.tokensPerSec.toFixed(0)} tok/s\n`,
      );
    }
  }
}
const result = {
  date: new Date().toISOString(),
  command: `node packages/lab/scripts/rss-v8-policy.mjs --steps ${steps} --repeats ${repeats}${outFile ? ` --out ${outFile}` : ''}`,
  runs,
};
if (outFile) writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(result)}\n`);
