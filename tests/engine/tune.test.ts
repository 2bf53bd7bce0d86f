// Adaptive layer tuning: what each step trains, schedules, determinism, checkpoints, artifacts.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { applyPeftAdapter } from '../../packages/engine/src/model/lora.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { AdaptiveTrainer, DEFAULT_TUNE, type TuneOptions } from '../../packages/engine/src/tune/trainer.js';
import { loadExamples, runTuning } from '../../packages/engine/src/tune/run.js';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../../packages/engine/src/tune/checkpoint.js';
import { measureStepFactor } from '../../packages/engine/src/schedule/speed.js';
import { CALIBRATION } from '../../packages/core/src/schedule/calibration.js';
import { CALIBRATION_LABELLED, plan } from '../../packages/core/src/schedule/planner.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { defaultExitLayers, validateExitLayers } from '../../packages/core/src/exits.js';
import { materializeHeads } from '../../packages/engine/src/tune/exits.js';
import { loadEdgeAdapter, plainPath } from '../../packages/engine/src/tune/artifacts.js';
import { exitProbabilities } from '../../packages/engine/src/infer/voting.js';
import { evaluatePaths } from '../../packages/engine/src/infer/evaluate.js';
import { DEFAULT_LORA } from '../../packages/engine/src/model/lora.js';
import type { Example } from '../../packages/engine/src/tune/batches.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { memoryFavoured } from '../../packages/engine/src/util/v8-heap.js';

let dir: string;
let modelDir: string;
let examples: Example[];
let padId: number;

const opts = (o: Partial<TuneOptions> = {}): TuneOptions => ({
  ...DEFAULT_TUNE,
  lora: { ...DEFAULT_LORA, r: 4, alpha: 8, dropout: 0 },
  steps: 8,
  microBatch: 4,
  warmupSteps: 0,
  lr: 5e-3,
  ...o,
});
const snapshot = (ts: tf.Tensor[]) => ts.map((t) => Float32Array.from(t.dataSync()));
const same = (a: Float32Array, b: ArrayLike<number>) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Trains a fresh model to `steps` (optionally loading / saving a checkpoint); losses and final variables. */
async function runTo(o: TuneOptions, steps: number, ckpt?: { save?: string; load?: string }) {
  const model = LlamaModel.load(modelDir);
  const t = new AdaptiveTrainer(model, examples, o, padId);
  if (ckpt?.load) loadTrainerCheckpoint(t, ckpt.load);
  const losses: number[] = [];
  while (t.state.step < steps) losses.push((await t.step()).loss);
  if (ckpt?.save) saveTrainerCheckpoint(t, ckpt.save);
  const vars = snapshot([...t.namedVariables().values()]);
  t.optimizer.dispose();
  model.dispose();
  return { losses, vars };
}

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-tune-'));
  modelDir = join(dir, 'model');
  createTinyModel(modelDir, { layers: 4 });
  writeToyTask(join(dir, 'train.jsonl'), 48, 1);
  writeToyTask(join(dir, 'val.jsonl'), 24, 2);
  const tok = await loadTokenizer(modelDir);
  padId = tok.padId!;
  examples = (await loadExamples(join(dir, 'train.jsonl'), tok, 64)).examples;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('exit layout', () => {
  it('defaults to every L/4 layers with the last exit on the last layer', () => {
    expect(defaultExitLayers(32)).toEqual([7, 15, 23, 31]);
    expect(defaultExitLayers(8)).toEqual([1, 3, 5, 7]);
    expect(defaultExitLayers(2)).toEqual([0, 1]);
    expect(() => validateExitLayers([1, 2], 4)).toThrow(/last exit/);
    expect(() => validateExitLayers([1, 1, 3], 4)).toThrow(/twice/);
  });
});

describe('AdaptiveTrainer', () => {
  it('trains only the active window (LoRA + exit head); frozen prefix, other windows and base stay put', async () => {
    const model = LlamaModel.load(modelDir);
    const t = new AdaptiveTrainer(model, examples, opts({ schedule: 'round_robin', steps: 4 }), padId);
    // Process-wide V8 flags are the entry points' to set (CLI, worker sandbox), never a constructor's.
    expect(memoryFavoured()).toBe(null);
    expect(t.exits.map((e) => [e.start, e.layer])).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    // Step 0..1 train windows 0 and 1; step 2 trains window 2: check what moves during it.
    await t.step();
    await t.step();
    const base = [...model.namedWeights().values()];
    const lora = (layer: number) =>
      t.loraLinears.filter((l) => l.name.includes(`.layers.${layer}.`)).flatMap((l) => [l.lora!.A, l.lora!.B]);
    const before = {
      base: snapshot(base),
      w1: snapshot(lora(1)),
      w2: snapshot(lora(2)),
      h1: snapshot([t.exits[1].head]),
      h2: snapshot([t.exits[2].head]),
    };
    const r = await t.step();
    expect(r.window).toBe(2);
    expect(r.exitLayer).toBe(2);
    snapshot(base).forEach((x, i) => expect(same(x, before.base[i])).toBe(true));
    snapshot(lora(1)).forEach((x, i) => expect(same(x, before.w1[i])).toBe(true));
    expect(same(snapshot([t.exits[1].head])[0], before.h1[0])).toBe(true);
    expect(snapshot(lora(2)).some((x, i) => !same(x, before.w2[i]))).toBe(true);
    expect(same(snapshot([t.exits[2].head])[0], before.h2[0])).toBe(false);
    t.optimizer.dispose();
    model.dispose();
  });

  it('keeps no prefix activations: a deep window peaks lower than vanilla LoRA through all layers', async () => {
    const peak = async (o: Partial<TuneOptions>) => {
      const model = LlamaModel.load(modelDir);
      const t = new AdaptiveTrainer(model, examples, opts({ measureMemory: true, steps: 4, ...o }), padId);
      for (let i = 0; i < 4; i++) await t.step();
      const p = t.peakTf;
      t.optimizer.dispose();
      model.dispose();
      return p;
    };
    const edge = await peak({ mode: 'edge_llm', schedule: 'sequential', exitLayers: [1, 3] });
    const vanilla = await peak({ mode: 'vanilla' });
    expect(edge).toBeGreaterThan(0);
    expect(edge).toBeLessThan(vanilla);
  });

  it('follows the window schedules', () => {
    const model = LlamaModel.load(modelDir);
    const seq = new AdaptiveTrainer(model, examples, opts({ schedule: 'sequential', steps: 10 }), padId);
    expect(Array.from({ length: 10 }, (_, s) => seq.windowAt(s))).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 3, 3]);
    const rr = new AdaptiveTrainer(model, examples, opts({ schedule: 'round_robin', steps: 10 }), padId);
    expect(Array.from({ length: 6 }, (_, s) => rr.windowAt(s))).toEqual([0, 1, 2, 3, 0, 1]);
    const rnd = new AdaptiveTrainer(model, examples, opts({ schedule: 'random', steps: 64 }), padId);
    const w = Array.from({ length: 64 }, (_, s) => rnd.windowAt(s));
    expect(new Set(w).size).toBe(4);
    expect(w).toEqual(Array.from({ length: 64 }, (_, s) => rnd.windowAt(s)));
    model.dispose();
  });

  it('is deterministic for a seed, and a resumed checkpoint continues exactly', async () => {
    const run = (steps: number, ckpt?: { save?: string; load?: string }) =>
      runTo(opts({ schedule: 'round_robin', steps: 6, lora: { ...DEFAULT_LORA, r: 4, alpha: 8, dropout: 0.1 } }), steps, ckpt);
    const full = await run(6);
    const again = await run(6);
    expect(again.losses).toEqual(full.losses);
    const ck = join(dir, 'ckpt');
    const first = await run(3, { save: ck });
    expect(existsSync(join(ck, 'trainer_state.json'))).toBe(true);
    const resumed = await run(6, { load: ck });
    expect([...first.losses, ...resumed.losses]).toEqual(full.losses);
    resumed.vars.forEach((v, i) => expect(same(v, full.vars[i])).toBe(true));
  });

  it('caches the frozen prefix across epochs without changing the result', async () => {
    const run = async (prefixCache: boolean) => {
      const model = LlamaModel.load(modelDir);
      // 48 examples / micro-batch 4 = 12 batches per epoch: 30 steps of window 2 (start 2) see each example 2-3 times.
      const t = new AdaptiveTrainer(model, examples, opts({ exitLayers: [1, 3], schedule: 'sequential', steps: 60, prefixCache }), padId);
      const losses: number[] = [];
      while (!t.done) losses.push((await t.step()).loss);
      const r = { losses, hits: t.cacheHits, misses: t.cacheMisses, bytes: t.cacheBytes };
      t.optimizer.dispose();
      model.dispose();
      return r;
    };
    const plain = await run(false),
      cached = await run(true);
    expect(plain.hits).toBe(0);
    expect(cached.misses).toBe(48); // every example's prefix computed once for window 1 (start 2)
    expect(cached.hits).toBeGreaterThanOrEqual(12 * 4); // at least one whole epoch served from the cache
    expect(cached.bytes).toBeGreaterThan(0);
    cached.losses.forEach((l, i) => expect(l).toBeCloseTo(plain.losses[i], 4));
  });

  it("adapted prefix under round_robin: a cycle shares its micro-batches, each window starts from the previous window's output, and resume is exact", async () => {
    const model = LlamaModel.load(modelDir);
    const t = new AdaptiveTrainer(
      model,
      examples,
      opts({ schedule: 'round_robin', prefix: 'adapted', exitLayers: [1, 3], steps: 6 }),
      padId,
    );
    expect(t.cascades).toBe(true);
    // Window 1's input must be layers 0-1 WITH window 0's LoRA (dropout 0), as it was before window 0's update.
    const w0 = t.exits[0];
    const batchTokens: number[] = [];
    const r0 = await t.step();
    batchTokens.push(r0.tokens);
    expect(r0.phases.prefixMs).toBeGreaterThanOrEqual(0);
    const flopsAfter0 = t.state.flops!;
    // Before window 0's first update its LoRA B is zero, so the output it hands on is the backbone's layers 0-1.
    const inner = t as unknown as { carry: { level: number; h: tf.Tensor }[]; cycleBatches: { ids: number[][] }[] };
    expect(inner.carry[0].level).toBe(2);
    const ids = inner.cycleBatches[0].ids;
    const ref = tf.tidy(() => {
      const ctx = model.context({ batch: ids.length, seq: ids[0].length });
      let h = model.embed(tf.tensor1d(Int32Array.from(ids.flat()), 'int32'));
      for (let i = 0; i <= 1; i++) h = model.layer(i, h, ctx, false);
      return h;
    });
    expect(Math.max(...Array.from(tf.sub(ref, inner.carry[0].h).abs().dataSync()))).toBeLessThan(1e-5);
    ref.dispose();
    const r1 = await t.step();
    batchTokens.push(r1.tokens);
    expect(batchTokens[1]).toBe(batchTokens[0]); // the same micro-batch, handed on
    // Window 1 ran no prefix layer: its FLOPs are those of its own two layers (as window 0's two layers).
    expect(Math.abs(t.state.flops! - flopsAfter0 - flopsAfter0) / flopsAfter0).toBeLessThan(0.01);
    expect(w0.start).toBe(0);
    t.optimizer.dispose();
    model.dispose();
    // The backbone prefix would have run layers 0-1 for window 1: twice the FLOPs of that step's prefix-free cost.
    const m2 = LlamaModel.load(modelDir);
    const b = new AdaptiveTrainer(m2, examples, opts({ schedule: 'round_robin', exitLayers: [1, 3], steps: 2 }), padId);
    expect(b.cascades).toBe(false);
    await b.step();
    const f0 = b.state.flops!;
    await b.step();
    expect((b.state.flops! - f0) / f0).toBeGreaterThan(1.2);
    b.optimizer.dispose();
    m2.dispose();
    // Determinism and exact resume in the middle of a cycle (the handed-on output is checkpointed).
    const run = (steps: number, ckpt?: { save?: string; load?: string }) =>
      runTo(
        opts({ schedule: 'round_robin', prefix: 'adapted', steps: 7, lora: { ...DEFAULT_LORA, r: 4, alpha: 8, dropout: 0.1 } }),
        steps,
        ckpt,
      );
    const full = await run(7);
    const ck = join(dir, 'ckpt-adapted');
    const first = await run(2, { save: ck }); // mid-cycle: window 2 of 4 is next
    const resumed = await run(7, { load: ck });
    expect([...first.losses, ...resumed.losses]).toEqual(full.losses);
    resumed.vars.forEach((v, i) => expect(same(v, full.vars[i])).toBe(true));
  });

  it('low-rank exit heads: lm_head shared and frozen, only A/B/norm train, and they materialise to head + 2BA', async () => {
    const model = LlamaModel.load(modelDir);
    const lm = Float32Array.from(model.lmHead.dataSync());
    const t = new AdaptiveTrainer(
      model,
      examples,
      opts({ exitLayers: [1, 3], schedule: 'round_robin', steps: 24, lr: 1e-2, headRank: 4 }),
      padId,
    );
    const e = t.exits[0];
    expect(e.head).toBe(model.lmHead);
    expect(e.lora!.A.shape).toEqual([4, model.config.hiddenSize]);
    expect(e.lora!.B.shape).toEqual([model.config.vocabSize, 4]);
    expect(t.trainableVars(0)).toContain(e.lora!.A);
    expect(t.trainableVars(0)).not.toContain(e.head);
    expect([...t.namedVariables().keys()]).toContain('exits.1.head.lora_B.weight');
    const losses: number[] = [];
    while (!t.done) losses.push((await t.step()).loss);
    expect(same(lm, model.lmHead.dataSync())).toBe(true); // the shared head never moved
    const B = Float32Array.from(e.lora!.B.dataSync());
    expect(B.some((x) => x !== 0)).toBe(true); // B left zero: the head did train
    const expected = tf.tidy(() => tf.add(model.lmHead, tf.mul(tf.matMul(e.lora!.B, e.lora!.A), 2)).dataSync());
    materializeHeads(t.exits);
    expect(e.lora).toBeUndefined();
    expect(e.head).not.toBe(model.lmHead);
    const dense = e.head.dataSync();
    expect(Math.max(...Array.from(dense, (x, i) => Math.abs(x - expected[i])))).toBeLessThan(1e-6);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)));
    t.optimizer.dispose();
    model.dispose();
  });

  it('learns: the loss falls on a toy task', async () => {
    const model = LlamaModel.load(modelDir);
    const t = new AdaptiveTrainer(model, examples, opts({ exitLayers: [3], steps: 30, lr: 1e-2 }), padId);
    const losses: number[] = [];
    while (!t.done) losses.push((await t.step()).loss);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-5))).toBeLessThan(mean(losses.slice(0, 5)) * 0.7);
    t.optimizer.dispose();
    model.dispose();
  });
});

describe('measureStepFactor', () => {
  it('times the reference workload against its forecast on the given device, keeps the lowest recent reading and frees what it made', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'edgetune-factor-'));
    const prev = process.env.EDGETUNE_CACHE_DIR;
    process.env.EDGETUNE_CACHE_DIR = cache;
    try {
      const dev = { memoryBudgetBytes: 8 * 2 ** 30, threads: 1, backend: 'wasm', matmulGflops: 50 };
      const tensors = tf.memory().numTensors,
        vars = Object.keys(tf.engine().registeredVariables).length;
      const f = await measureStepFactor(dev, 0.05);
      expect(f.steps).toBeGreaterThanOrEqual(3);
      expect(f.measuredMs).toBeGreaterThan(0);
      // the reading scales the forecast's non-matmul part: (measured - matmul) / (forecast - matmul)
      expect(f.matmulMs).toBeGreaterThan(0);
      expect(f.matmulMs).toBeLessThan(f.forecastMs);
      expect(f.reading).toBeCloseTo(Math.min(4, Math.max(0.25, (f.measuredMs - f.matmulMs) / (f.forecastMs - f.matmulMs))), 9);
      expect([f.readings, f.factor]).toEqual([1, f.reading]); // nothing remembered yet
      // the forecast is the planner's for the device: 100x the SGEMM throughput, less time (and its own readings)
      const fast = await measureStepFactor({ ...dev, matmulGflops: 5000 }, 0.05);
      expect(fast.forecastMs).toBeLessThan(f.forecastMs);
      expect(fast.readings).toBe(1);
      // a second reading on the first device: the lower of the two
      const again = await measureStepFactor(dev, 0.05);
      expect(again.readings).toBe(2);
      expect(again.factor).toBe(Math.min(f.reading, again.reading));
      // another cost model (a recalibration): another forecast, and the old model's readings do not count
      const recalibrated = await measureStepFactor(dev, 0.05, { ...CALIBRATION, msPerStep: CALIBRATION.msPerStep + 100 });
      expect(recalibrated.forecastMs).toBeGreaterThan(f.forecastMs + 99);
      expect(recalibrated.readings).toBe(1);
      expect(tf.memory().numTensors).toBe(tensors);
      expect(Object.keys(tf.engine().registeredVariables)).toHaveLength(vars);
    } finally {
      if (prev === undefined) delete process.env.EDGETUNE_CACHE_DIR;
      else process.env.EDGETUNE_CACHE_DIR = prev;
      rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('planner: the exit head at the scored rows', () => {
  it('forecasts the TF.js peak that scored rows add (text continuation scores tens per example): low-rank heads within 25%, full heads a lower bound', async () => {
    const T = 40,
      mb = 4;
    const peakAt = async (k: number, headRank: number) => {
      const model = LlamaModel.load(modelDir);
      const V = model.config.vocabSize,
        rng = new Rng(3);
      const ex = Array.from({ length: 16 }, () => {
        const ids = Array.from({ length: T }, () => 4 + rng.int(V - 4));
        return { inputIds: ids, labels: ids.map((x, t) => (t >= T - k ? x : -100)) };
      });
      const t = new AdaptiveTrainer(model, ex, opts({ schedule: 'round_robin', prefix: 'adapted', headRank, microBatch: mb }), padId);
      for (let i = 0; i < 4; i++) await t.step();
      let peak = 0;
      for (let i = 0; i < 4; i++)
        peak = Math.max(
          peak,
          (
            await tf.profile(async () => {
              await t.step();
            })
          ).peakBytes,
        );
      const config = model.config;
      t.optimizer.dispose();
      model.dispose();
      return { peak, config };
    };
    for (const headRank of [4, 0]) {
      const lo = await peakAt(CALIBRATION_LABELLED, headRank),
        hi = await peakAt(32, headRank);
      const forecast = (k: number) =>
        plan(
          {
            model: lo.config,
            mode: 'edge_llm',
            loraR: 4,
            headRank,
            batchSize: mb,
            microBatch: mb,
            seqLen: T,
            steps: 8,
            trainExamples: 16,
            prefix: 'adapted',
            schedule: 'round_robin',
            prefixCache: false,
            labelledPerExample: k,
          },
          { memoryBudgetBytes: 2 ** 34, threads: 1, backend: 'wasm', matmulGflops: 10 },
        ).forecast.peakTfBytes;
      const measured = hi.peak - lo.peak,
        forecastDelta = forecast(32) - forecast(CALIBRATION_LABELLED);
      expect(measured).toBeGreaterThan(0);
      // Full heads: the planner's per-row growth is the default model's (HEAD_ROW_TENSORS), a lower bound here.
      if (headRank > 0)
        expect(Math.abs(forecastDelta / measured - 1), `forecast +${forecastDelta} vs measured +${measured} bytes`).toBeLessThan(0.25);
      else {
        expect(forecastDelta / measured).toBeGreaterThan(0.2);
        expect(forecastDelta).toBeLessThan(measured);
      }
    }
  });
});

describe('runTuning artifacts', () => {
  it('adapted prefix: every exit path runs LoRA from layer 0, and the PEFT adapter (LoRA on all layers) equals the deepest path', async () => {
    const out = join(dir, 'out-adapted');
    await runTuning({
      modelDir,
      trainFile: join(dir, 'train.jsonl'),
      validationFile: join(dir, 'val.jsonl'),
      outDir: out,
      maxLength: 64,
      tune: { steps: 8, microBatch: 4, lr: 5e-3, schedule: 'round_robin', prefix: 'adapted', lora: { r: 4, alpha: 8 } },
    });
    const voted = LlamaModel.load(modelDir);
    const { paths, manifest } = loadEdgeAdapter(voted, out);
    expect(manifest.prefix).toBe('adapted');
    expect(manifest.window_starts).toEqual([0, 1, 2, 3]);
    expect(paths.map((p) => p.start)).toEqual([0, 0, 0, 0]);
    const ids = [
      [1, 40, 41, 42, 43, 44, 45, 46],
      [1, 50, 51, 52, 53, 54, 55, 56],
    ];
    const rows = Int32Array.from({ length: 16 }, (_, i) => i);
    const probs = exitProbabilities(voted, paths, ids, rows);
    // The shared LoRA stream gives each exit what a separate pass from layer 0 gives.
    const alone = exitProbabilities(voted, [paths[1]], ids, rows);
    expect(Math.max(...Array.from(tf.sub(probs[1], alone[0]).abs().dataSync()))).toBeLessThan(1e-6);
    const peft = LlamaModel.load(modelDir);
    applyPeftAdapter(peft, join(out, 'peft'));
    const { logits } = peft.forward(ids, { lora: true });
    const viaPeft = tf.softmax(tf.reshape(logits, [16, -1])).dataSync();
    const deepest = probs[probs.length - 1].dataSync();
    let err = 0;
    for (let i = 0; i < deepest.length; i++) err = Math.max(err, Math.abs(deepest[i] - viaPeft[i]));
    expect(err).toBeLessThan(1e-5);
    tf.dispose([...probs, ...alone, logits]);
    voted.dispose();
    peft.dispose();
  });

  it('free-form completions (more than 32 distinct first tokens): validation scores perplexity only and the vote is chosen by loss', async () => {
    // Each completion starts with another character, so no set of class tokens exists (evaluate.ts classTokensOf).
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
    writeFileSync(
      join(dir, 'free.jsonl'),
      `${[...chars]
        .map((c, i) => JSON.stringify({ prompt: `Passage ${i} of the voyage:`, completion: `${c}${c} the whale went on` }))
        .join('\n')}\n`,
    );
    const report = await runTuning({
      modelDir,
      trainFile: join(dir, 'train.jsonl'),
      validationFile: join(dir, 'free.jsonl'),
      outDir: join(dir, 'out-free'),
      maxLength: 64,
      tune: { steps: 2, microBatch: 4, lora: { r: 4, alpha: 8 } },
    });
    const v = report.validation!;
    expect(v.classTokens).toBeNull();
    expect(v.examples).toBe(36);
    for (const m of [...v.perExit, ...Object.values(v.voted)]) {
      expect(m.accuracy).toBeNull();
      expect(Number.isFinite(m.perplexity) && m.perplexity > 1).toBe(true);
    }
    expect(v.voted[report.votingRule!].loss).toBe(Math.min(...Object.values(v.voted).map((m) => m.loss)));
  });

  it("vanilla LoRA writes a PEFT adapter whose PEFT-way validation metrics are the run's, and refuses compression", async () => {
    const out = join(dir, 'out-vanilla');
    const base = { modelDir, trainFile: join(dir, 'train.jsonl'), validationFile: join(dir, 'val.jsonl'), outDir: out, maxLength: 64 };
    const report = await runTuning({ ...base, tune: { mode: 'vanilla', steps: 8, microBatch: 4, lr: 5e-3, lora: { r: 4, alpha: 8 } } });
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'metrics.json']) expect(existsSync(join(out, f)), f).toBe(true);
    // the bundle manifest every method writes: one path, through this PEFT adapter
    expect(JSON.parse(readFileSync(join(out, 'edge_llm.json'), 'utf8'))).toMatchObject({
      mode: 'vanilla',
      exit_layers: [report.validation!.perExit[0].layer],
    });
    const peft = LlamaModel.load(modelDir);
    applyPeftAdapter(peft, out);
    const { examples: valEx } = await loadExamples(join(dir, 'val.jsonl'), await loadTokenizer(modelDir), 64);
    const r = evaluatePaths(peft, [plainPath(peft)], valEx, { padId });
    expect(r.perExit[0].loss).toBeCloseTo(report.validation!.perExit[0].loss, 5);
    peft.dispose();
    await expect(
      runTuning({
        ...base,
        outDir: join(dir, 'out-vanilla-luc'),
        compression: { targetSparsity: 0.5, avgBits: 4 },
        tune: { mode: 'vanilla', steps: 2 },
      }),
    ).rejects.toThrow(/vanilla/);
  });

  it('writes the voted model and a PEFT adapter whose PEFT-way logits equal the deepest exit path', async () => {
    const out = join(dir, 'out');
    const report = await runTuning({
      modelDir,
      trainFile: join(dir, 'train.jsonl'),
      validationFile: join(dir, 'val.jsonl'),
      outDir: out,
      maxLength: 64,
      tune: { steps: 8, microBatch: 4, lr: 5e-3, lora: { r: 4, alpha: 8 } },
    });
    expect(report.validation?.perExit).toHaveLength(4);
    expect(report.votingRule).not.toBeNull();
    for (const f of ['edge_llm.json', 'edge_llm.safetensors', 'metrics.json', 'peft/adapter_config.json', 'peft/adapter_model.safetensors'])
      expect(existsSync(join(out, f)), f).toBe(true);
    const ids = [
      [1, 40, 41, 42, 43, 44, 45, 46],
      [1, 50, 51, 52, 53, 54, 55, 56],
    ];
    const rows = Int32Array.from({ length: 16 }, (_, i) => i);
    const voted = LlamaModel.load(modelDir);
    const { paths } = loadEdgeAdapter(voted, out);
    const probs = exitProbabilities(voted, paths, ids, rows);
    const deepest = probs[probs.length - 1].dataSync();
    const peft = LlamaModel.load(modelDir);
    applyPeftAdapter(peft, join(out, 'peft'));
    const { logits } = peft.forward(ids, { lora: true });
    const viaPeft = tf.softmax(tf.reshape(logits, [16, -1])).dataSync();
    let err = 0;
    for (let i = 0; i < deepest.length; i++) err = Math.max(err, Math.abs(deepest[i] - viaPeft[i]));
    expect(err).toBeLessThan(1e-5);
    // The shallower exits differ from the deepest path (they really are other paths).
    let diff = 0;
    const shallow = probs[0].dataSync();
    for (let i = 0; i < deepest.length; i++) diff = Math.max(diff, Math.abs(deepest[i] - shallow[i]));
    expect(diff).toBeGreaterThan(1e-4);
    tf.dispose([...probs, logits]);
    // The weighted vote's exit weights were fitted on validation, saved, and are reused as they are.
    const w = report.validation!.exitWeights;
    expect(w).toHaveLength(4);
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(paths.map((p) => p.weight)).toEqual(w);
    const { examples: valEx } = await loadExamples(join(dir, 'val.jsonl'), await loadTokenizer(modelDir), 64);
    const again = evaluatePaths(
      voted,
      paths.map((p, k) => ({ ...p, weight: k === 0 ? 1 : 0 })),
      valEx,
      { padId },
    );
    expect(again.exitWeights).toEqual([1, 0, 0, 0]);
    expect(again.voted.weighted.loss).toBeCloseTo(again.perExit[0].loss, 5); // all weight on exit 0 = exit 0 alone
    voted.dispose();
    peft.dispose();
  });
});
