/**
 * `npm run bench -- --scale`: the engine on randomly initialised models of real configurations (SmolLM2
 * 135M/360M, Qwen2.5-0.5B, TinyLlama-1.1B, Llama-3.2-1B/3B; `edgetune-engine synth-model`), measured side by
 * side in one run, each run a child process (RSS is per process: the wasm heap never shrinks):
 * - load: time to load the BF16 folder, resident memory after it, bytes kept outside the TF.js heap;
 * - generation: tokens/s with the KV cache after a 256-token context (plain path, greedy);
 * - tuning, same data, steps, batch and seed: Edge-LLM with 4-bit LUC (uniform policy), Edge-LLM on the
 *   BF16 weights, vanilla LoRA on the BF16 weights (where the planner says it fits the memory budget):
 *   tokens/s, matmul GFLOP/s as a share of this machine's SGEMM peak, peak RSS of the whole process (Linux
 *   maxrss), TF.js peak, and the planner's forecast error (step time, TF.js peak);
 * - LUC sensitivity profiling time on one 1 B model (`--profile-luc NAME`).
 * Random weights make accuracy meaningless here: the bench measures speed and memory only.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import {
  backendInfo,
  calibrationFromExamples,
  generate,
  LlamaModel,
  loadExamples,
  loadTokenizer,
  measureSgemmPeak,
  plainPath,
  profileSensitivity,
  recordSgemmPeak,
  runTuning,
  type LucPolicy,
} from '@edgetune/engine';
import { loadLlamaConfig, uniformPolicy } from '@edgetune/core';
import { buildSpamAssassin } from '../data/spam-assassin.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli.js');
const REPO = resolve(here, '..', '..', '..', '..');
const ENGINE_CLI = join(REPO, 'packages', 'engine', 'bin', 'edgetune-engine.js');

/** The shapes the bench runs, smallest first (names of `edgetune-engine synth-model --like`). */
export const SCALE_MODELS = ['smollm2-135m', 'smollm2-360m', 'qwen2.5-0.5b', 'tinyllama-1.1b', 'llama-3.2-1b', 'llama-3.2-3b'] as const;

/** One child's job. */
export type ScaleTask =
  | { kind: 'load'; model: string; contextTokens: number; newTokens: number; rerunTokens: number }
  | {
      kind: 'tune';
      label: string;
      model: string;
      mode: 'edge_llm' | 'vanilla';
      bits: number | null;
      train: string;
      steps: number;
      batch: number;
      maxLength: number;
      memoryBudgetBytes: number;
      matmulGflops: number;
    }
  | { kind: 'profile'; model: string; train: string };

/** Peak resident memory of this process so far (Linux ru_maxrss), bytes. */
const maxRss = () => process.resourceUsage().maxRSS * 1024;

/** Runs one task in this process (the `bench-scale-run` child command); returns its JSON result. */
export async function scaleRun(t: ScaleTask): Promise<Record<string, unknown>> {
  if (t.kind === 'load') {
    const t0 = performance.now();
    const model = LlamaModel.load(t.model);
    const loadMs = performance.now() - t0;
    const rssAfterLoad = process.memoryUsage().rss;
    const tok = await loadTokenizer(t.model);
    const prompt = Array.from({ length: t.contextTokens }, (_, i) => 3 + ((i * 7919) % (tok.vocabSize - 3)));
    const path = plainPath(model);
    // a first short run warms the kernels up, the timed ones follow: the prefill and first token alone, then all
    generate(model, [path], prompt.slice(0, 8), { maxNewTokens: 2, rule: 'max' });
    const p0 = performance.now();
    generate(model, [path], prompt, { maxNewTokens: 1, rule: 'max' });
    const prefillMs = performance.now() - p0;
    const g0 = performance.now();
    const out = generate(model, [path], prompt, { maxNewTokens: t.newTokens, rule: 'max' });
    const genMs = performance.now() - g0;
    // The same generation re-running the whole context for every token (no KV cache), for rerunTokens tokens:
    // its time per token is nearly constant, so newTokens of it are extrapolated.
    const r0 = performance.now();
    const rerun = generate(model, [path], prompt, { maxNewTokens: t.rerunTokens, rule: 'max', kvCache: false });
    const rerunMsPerToken = (performance.now() - r0) / rerun.length;
    const r = {
      loadMs,
      rssAfterLoadBytes: rssAfterLoad,
      storedWeightBytes: model.storedBytes(),
      tfBytesAfterLoad: tf.memory().numBytes,
      params: model.paramCount(),
      generation: {
        contextTokens: t.contextTokens,
        newTokens: out.length,
        ms: genMs,
        tokensPerSec: (out.length / genMs) * 1000,
        rerunMsPerToken,
        kvSpeedup: (rerunMsPerToken * out.length) / genMs,
        prefillMs,
        // a decoded token after the prefill, against a token of the re-run (both at about 256 tokens of context)
        decodeMsPerToken: (genMs - prefillMs) / Math.max(1, out.length - 1),
        decodeSpeedup: rerunMsPerToken / ((genMs - prefillMs) / Math.max(1, out.length - 1)),
      },
      maxRssBytes: maxRss(),
    };
    model.dispose();
    return r;
  }
  if (t.kind === 'profile') {
    const tok = await loadTokenizer(t.model);
    const model = LlamaModel.load(t.model);
    const { examples } = await loadExamples(t.train, tok, 128);
    const calib = calibrationFromExamples(examples, 8, 128, t.train);
    const report = profileSensitivity(model, calib, { method: 'wanda' });
    return {
      ms: report.ms,
      layers: report.layers.length,
      calibrationTokens: report.calibration.tokens,
      lossDelta: report.layers[0].pruneDloss.length > 0,
      maxRssBytes: maxRss(),
    };
  }
  const out = mkdtempSync(join(tmpdir(), `edgetune-scale-${t.label}-`));
  const L = loadLlamaConfig(t.model).numHiddenLayers;
  const policy: LucPolicy | undefined = t.bits === null ? undefined : uniformPolicy(L, t.bits);
  let peakTf = 0;
  const report = await runTuning({
    modelDir: t.model,
    trainFile: t.train,
    outDir: out,
    maxLength: t.maxLength,
    device: { memoryBudgetBytes: t.memoryBudgetBytes, matmulGflops: t.matmulGflops },
    compression: policy ? { targetSparsity: 0, avgBits: t.bits!, policy, calibrationSequences: 4, calibrationTokens: 128 } : undefined,
    tune: {
      mode: t.mode,
      steps: t.steps,
      microBatch: t.batch,
      lr: 1e-3,
      seed: 42,
      warmupSteps: 1,
      measureMemory: 1,
      lora: { r: 16, alpha: 32, dropout: 0.05 },
      schedule: 'round_robin',
      headRank: 16,
      prefix: 'adapted',
    },
    onStep: (r) => {
      if (r.peakTfBytes && r.peakTfBytes > peakTf) peakTf = r.peakTfBytes;
      process.stderr.write(
        `[scale ${t.label}] step ${r.step}/${r.totalSteps} loss ${r.loss.toFixed(3)} ${Math.round(r.tokensPerSec)} tok/s\n`,
      );
    },
  });
  return {
    label: t.label,
    mode: t.mode,
    bits: t.bits,
    steps: report.steps,
    tokens: report.tokens,
    loadMs: report.loadMs,
    tokensPerSec: report.tokensPerSec,
    gflopsPerSec: report.gflopsPerSec,
    sgemmShare: report.gflopsPerSec / t.matmulGflops,
    peakTfBytes: peakTf,
    trainPeakRssBytes: report.peakRssBytes,
    maxRssBytes: maxRss(),
    storedWeightBytes: report.storedWeightBytes,
    compressMs: report.compression?.report.ms ?? null,
    plan: report.plan,
    backend: backendInfo(),
  };
}

function child(task: ScaleTask, dir: string, label: string): Promise<Record<string, unknown>> {
  const file = join(dir, `${label}.json`);
  writeFileSync(file, JSON.stringify(task));
  return new Promise((res) => {
    const p = spawn(process.execPath, [CLI, 'bench-scale-run', '--task', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => {
      err += d;
      process.stderr.write(d);
    });
    p.on('close', (code, signal) => {
      try {
        if (code === 0) return res(JSON.parse(out.trim().split('\n').pop()!));
      } catch {}
      // A refusal (plan_does_not_fit) or a crash is a result too: kept with its last line.
      const last = err.trim().split('\n').filter(Boolean).pop() ?? '';
      res({ failed: true, exitCode: code, signal, error: last });
    });
  });
}

/**
 * The scale bench. Writes JSON to `out` (default bench/results/scale-<date>.json).
 * @param o.models shapes to run (default all of {@link SCALE_MODELS}); o.modelsDir where synthetic models are
 *   kept (made with `edgetune-engine synth-model` when missing); o.steps tuning steps per run.
 */
export async function runScaleBench(o: {
  out?: string;
  models?: string[];
  modelsDir?: string;
  steps?: number;
  profileLuc?: string | null;
}): Promise<void> {
  const names = o.models ?? [...SCALE_MODELS];
  const dir = resolve(o.modelsDir ?? join(tmpdir(), 'edgetune-synth'));
  const work = mkdtempSync(join(tmpdir(), 'edgetune-scale-'));
  const data = await buildSpamAssassin({ outDir: work });
  const train = join(work, 'train.jsonl');
  const steps = o.steps ?? 10,
    batch = 4,
    maxLength = 128;
  const peak = measureSgemmPeak({});
  recordSgemmPeak(peak);
  process.stderr.write(`[scale] SGEMM peak ${peak.gflops.toFixed(1)} GFLOP/s; ${data.train} training examples; models in ${dir}\n`);
  const results: Record<string, unknown>[] = [];
  const budgets: Record<string, number> = { 'tinyllama-1.1b': 4096, 'llama-3.2-3b': 8192 };
  for (const name of names) {
    const md = join(dir, name);
    if (!existsSync(join(md, 'config.json'))) {
      mkdirSync(dir, { recursive: true });
      process.stderr.write(`[scale] writing the random ${name} to ${md}\n`);
      await new Promise<void>((res, rej) =>
        spawn(process.execPath, [ENGINE_CLI, 'synth-model', '--like', name, '--out', md], { stdio: ['ignore', 'ignore', 'inherit'] }).on(
          'close',
          (code) => (code === 0 ? res() : rej(new Error(`synth-model ${name} exited with ${code}`))),
        ),
      );
    }
    const budget = (budgets[name] ?? 6144) * 2 ** 20;
    const row: Record<string, unknown> = { model: name, memoryBudgetBytes: budget };
    row.load = await child({ kind: 'load', model: md, contextTokens: 256, newTokens: 32, rerunTokens: 3 }, work, `${name}-load`);
    const tune = (label: string, mode: 'edge_llm' | 'vanilla', bits: number | null, budgetBytes = budget) =>
      child(
        {
          kind: 'tune',
          label,
          model: md,
          mode,
          bits,
          train,
          steps,
          batch,
          maxLength,
          memoryBudgetBytes: budgetBytes,
          matmulGflops: peak.gflops,
        },
        work,
        `${name}-${label}`,
      );
    row.vanillaBf16 = await tune('vanilla_bf16', 'vanilla', null, 6144 * 2 ** 20);
    row.edgeLlm4bit = await tune('edge_llm_luc4', 'edge_llm', 4);
    row.edgeLlmBf16 = await tune('edge_llm_bf16', 'edge_llm', null, 6144 * 2 ** 20);
    // Edge-LLM + 4-bit LUC planned for a quarter of what vanilla LoRA's process peaked at: the planner adds exits
    // (shallower windows) until its forecast fits, or refuses with its figures.
    const vanillaRss = (row.vanillaBf16 as { maxRssBytes?: number }).maxRssBytes;
    if (vanillaRss) row.edgeLlm4bitQuarter = await tune('edge_llm_luc4_quarter', 'edge_llm', 4, Math.floor(vanillaRss / 4));
    results.push(row);
    const e = row.edgeLlm4bit as Record<string, number>,
      v = row.vanillaBf16 as Record<string, number>;
    process.stderr.write(
      `[scale] ${name}: Edge-LLM+4-bit ${e.tokensPerSec?.toFixed(1)} tok/s, ${((e.maxRssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB; vanilla BF16 ${v.tokensPerSec?.toFixed(1) ?? 'n/a'} tok/s, ${((v.maxRssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB\n`,
    );
  }
  let profile: Record<string, unknown> | null = null;
  const pl = o.profileLuc === undefined ? 'tinyllama-1.1b' : o.profileLuc;
  if (pl && names.includes(pl)) profile = await child({ kind: 'profile', model: join(dir, pl), train }, work, `${pl}-profile`);
  const date = new Date().toISOString().slice(0, 10);
  const file = o.out ?? join(REPO, 'bench', 'results', `scale-${date}.json`);
  const summary = {
    date,
    command: `npm run bench -- --scale${o.models ? ` --models ${names.join(',')}` : ''}${o.steps ? ` --steps ${steps}` : ''}${o.modelsDir ? ` --models-dir ${o.modelsDir}` : ''}${o.profileLuc === undefined ? '' : ` --profile-luc ${o.profileLuc ?? 'none'}`}${o.out ? ` --out ${relative(REPO, resolve(o.out))}` : ''}`,
    machine: { cpus: cpus().length, model: cpus()[0]?.model },
    sgemmPeakGflops: peak.gflops,
    settings: {
      steps,
      batch,
      maxLength,
      loraR: 16,
      headRank: 16,
      schedule: 'round_robin',
      prefix: 'adapted',
      weights: 'random (synth-model), BF16',
    },
    note: 'Random weights: speed and memory only. Peak RSS is the child process high-water mark (Linux maxrss), load and LUC compression included.',
    results,
    lucProfile: profile ? { model: pl, ...profile } : null,
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
  process.stderr.write(`[scale] wrote ${file}\n`);
}
