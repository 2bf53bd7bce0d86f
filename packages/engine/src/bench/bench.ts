/**
 * `npm run bench`: Edge-LLM adaptive layer tuning vs vanilla LoRA through all layers, same model, data,
 * steps and seed, measured side by side in one run. Each mode runs in its own child process so that
 * process RSS (which never shrinks: the wasm heap only grows) is measured per mode. Reports tokens/s,
 * TF.js peak bytes, peak RSS, validation accuracy (voted for Edge-LLM), and training matmul GFLOP/s
 * as a fraction of the SGEMM peak measured in the same run.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { backendInfo, measureSgemmPeak } from '../backend/index.js';
import { buildSpamAssassin } from '../data/spam-assassin.js';
import { runTuning, type TuneJobReport } from '../tune/run.js';
import { instrumentMatMulFlops, matmulFlops, resetMatmulFlops } from './flops.js';
import type { TuneMode } from '../tune/trainer.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli.js');
const REPO = resolve(here, '..', '..', '..', '..');

/** Settings shared by both modes. */
export interface BenchSettings {
  model: string;
  train: string;
  val: string;
  steps: number;
  batch: number;
  maxLength: number;
  lr: number;
  seed: number;
  loraR: number;
}

/** One mode's measurements. Units: tokens/s, bytes, ms, GFLOP/s; accuracy in [0,1]. */
export interface BenchRunResult {
  mode: TuneMode;
  steps: number;
  tokens: number;
  trainMs: number;
  tokensPerSec: number;
  matmulGflop: number;
  gflopsPerSec: number;
  peakTfBytes: number;
  peakRssBytes: number;
  accuracy: number | null;
  votingRule: string | null;
  perExit: { layer: number; accuracy: number | null }[];
  backend: unknown;
}

/** Runs one mode in this process (the `bench-run` child command). */
export async function benchRun(mode: TuneMode, s: BenchSettings): Promise<BenchRunResult> {
  instrumentMatMulFlops();
  resetMatmulFlops();
  const out = mkdtempSync(join(tmpdir(), `edgetune-bench-${mode}-`));
  let peakTf = 0, trainFlops = 0;
  const report: TuneJobReport = await runTuning({
    modelDir: s.model, trainFile: s.train, validationFile: s.val, outDir: out, maxLength: s.maxLength,
    tune: { mode, steps: s.steps, microBatch: s.batch, lr: s.lr, seed: s.seed, warmupSteps: Math.min(10, Math.floor(s.steps / 8)), measureMemory: 10, lora: { r: s.loraR, alpha: 2 * s.loraR, dropout: 0.05 } },
    onStep: (r) => {
      if (r.peakTfBytes && r.peakTfBytes > peakTf) peakTf = r.peakTfBytes;
      trainFlops = matmulFlops();
      if (r.step % 25 === 0 || r.step === r.totalSteps) process.stderr.write(`[bench ${mode}] step ${r.step}/${r.totalSteps} loss ${r.loss.toFixed(4)} ${Math.round(r.tokensPerSec)} tok/s\n`);
    },
  });
  const v = report.validation;
  const voted = v && report.votingRule && mode === 'edge_llm' ? v.voted[report.votingRule].accuracy : v?.perExit[v.perExit.length - 1].accuracy ?? null;
  return {
    mode, steps: report.steps, tokens: report.tokens, trainMs: report.trainMs, tokensPerSec: report.tokensPerSec,
    matmulGflop: trainFlops / 1e9, gflopsPerSec: trainFlops / 1e9 / (report.trainMs / 1000), peakTfBytes: peakTf,
    peakRssBytes: report.peakRssBytes, accuracy: voted, votingRule: mode === 'edge_llm' ? report.votingRule : null,
    perExit: v?.perExit.map((e) => ({ layer: e.layer, accuracy: e.accuracy })) ?? [], backend: backendInfo(),
  };
}

function child(mode: TuneMode, s: BenchSettings): Promise<BenchRunResult> {
  return new Promise((res, rej) => {
    const args = [CLI, 'bench-run', '--mode', mode, '--model', s.model, '--train', s.train, '--val', s.val, '--steps', String(s.steps),
      '--batch', String(s.batch), '--max-length', String(s.maxLength), '--lr', String(s.lr), '--seed', String(s.seed), '--lora-r', String(s.loraR)];
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('error', rej);
    p.on('close', (code) => {
      if (code !== 0) return rej(new Error(`bench-run ${mode} exited with ${code}`));
      try { res(JSON.parse(out.trim().split('\n').pop()!)); } catch (e) { rej(e); }
    });
  });
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/**
 * The whole benchmark. Writes JSON to `out` (default bench/results/tuning-<date>.json).
 * @throws Error when the default model is missing.
 */
export async function runBench(o: { out?: string; steps?: number; quick?: boolean; model?: string }): Promise<void> {
  const model = resolve(o.model ?? process.env.EDGETUNE_BENCH_MODEL ?? join(REPO, 'models', 'edgetune-tiny-llama'));
  if (!existsSync(join(model, 'config.json'))) throw new Error(`bench: no model at ${model} (see README: models/ holds the default base model)`);
  const data = mkdtempSync(join(tmpdir(), 'edgetune-bench-data-'));
  await buildSpamAssassin({ outDir: data });
  const s: BenchSettings = {
    model, train: join(data, 'train.jsonl'), val: join(data, 'validation.jsonl'),
    steps: o.steps ?? (o.quick ? 40 : 240), batch: 8, maxLength: 192, lr: 2e-3, seed: 42, loraR: 8,
  };
  process.stderr.write(`[bench] model ${model}, ${s.steps} steps x ${s.batch} examples, max ${s.maxLength} tokens, seed ${s.seed}\n`);
  const peak = measureSgemmPeak({});
  process.stderr.write(`[bench] SGEMM peak ${peak.gflops.toFixed(1)} GFLOP/s (${peak.source}, n=${peak.n}, ${peak.threads} threads)\n`);
  const vanilla = await child('vanilla', s);
  const edge = await child('edge_llm', s);
  const ratio = {
    speedup: edge.tokensPerSec / vanilla.tokensPerSec,
    tfMemoryReduction: vanilla.peakTfBytes / edge.peakTfBytes,
    rssReduction: vanilla.peakRssBytes / edge.peakRssBytes,
    accuracyDeltaPoints: edge.accuracy !== null && vanilla.accuracy !== null ? (edge.accuracy - vanilla.accuracy) * 100 : null,
    edgePeakFraction: edge.gflopsPerSec / peak.gflops,
    vanillaPeakFraction: vanilla.gflopsPerSec / peak.gflops,
  };
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(2)}%`);
  const rows = [
    ['', 'vanilla LoRA', 'Edge-LLM', 'ratio'],
    ['tokens/s', vanilla.tokensPerSec.toFixed(0), edge.tokensPerSec.toFixed(0), `${ratio.speedup.toFixed(2)}x faster`],
    ['peak TF.js memory', mib(vanilla.peakTfBytes), mib(edge.peakTfBytes), `${ratio.tfMemoryReduction.toFixed(2)}x less`],
    ['peak RSS', mib(vanilla.peakRssBytes), mib(edge.peakRssBytes), `${ratio.rssReduction.toFixed(2)}x less`],
    ['validation accuracy', pct(vanilla.accuracy), `${pct(edge.accuracy)} (${edge.votingRule} vote)`, ratio.accuracyDeltaPoints === null ? 'n/a' : `${ratio.accuracyDeltaPoints >= 0 ? '+' : ''}${ratio.accuracyDeltaPoints.toFixed(2)} points`],
    ['matmul GFLOP/s', vanilla.gflopsPerSec.toFixed(1), edge.gflopsPerSec.toFixed(1), ''],
    [`share of SGEMM peak (${peak.gflops.toFixed(0)})`, pct(ratio.vanillaPeakFraction), pct(ratio.edgePeakFraction), ''],
  ];
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length)));
  process.stdout.write('\n' + rows.map((r) => r.map((x, c) => x.padEnd(w[c])).join('  ')).join('\n') + '\n');
  process.stdout.write(`targets: speedup >= 3x ${ratio.speedup >= 3 ? 'MET' : 'not met'}; TF memory >= 4x ${ratio.tfMemoryReduction >= 4 ? 'MET' : 'not met'}; accuracy within 1 point ${ratio.accuracyDeltaPoints !== null && ratio.accuracyDeltaPoints >= -1 ? 'MET' : 'not met'}; >= 25% of SGEMM peak ${ratio.edgePeakFraction >= 0.25 ? 'MET' : 'not met'}\n`);
  const result = { date: new Date().toISOString(), machine: { cpus: cpus().length, cpu: cpus()[0]?.model }, settings: s, sgemmPeak: peak, vanilla, edge_llm: edge, ratio };
  const out = o.out ?? join(REPO, 'bench', 'results', `tuning-${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`wrote ${out}\n`);
  void tf;
}
