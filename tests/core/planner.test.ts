// The planner's decisions and forecast arithmetic (pure, no TF.js).
import { describe, it, expect } from 'vitest';
import {
  FROZEN_SCRATCH_BYTES,
  frozenKernelIsNative,
  plan,
  plannerStoredDtype,
  PlanError,
  prefixCacheHits,
  tensorHeapCeilingOf,
  WASM_TENSOR_HEAP_CEILING_BYTES,
  type PlanInput,
  type DeviceProfile,
} from '../../packages/core/src/schedule/planner.js';
import { CALIBRATION } from '../../packages/core/src/schedule/calibration.js';

const model = {
  vocabSize: 4096,
  hiddenSize: 192,
  intermediateSize: 512,
  numHiddenLayers: 8,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 48,
  tieWordEmbeddings: true,
};
const base: PlanInput = { model, mode: 'edge_llm', loraR: 8, batchSize: 8, seqLen: 192, steps: 200, trainExamples: 4000 };
const dev = (mb: number): DeviceProfile => ({ memoryBudgetBytes: mb * 2 ** 20, threads: 2, backend: 'wasm', matmulGflops: 150 });

describe('plan', () => {
  it('keeps the default exits and micro-batch when they fit', () => {
    const p = plan(base, dev(8000));
    expect(p.fits).toBe(true);
    expect(p.exitLayers).toEqual([1, 3, 5, 7]);
    expect(p.windowDepth).toBe(2);
    expect(p.microBatch).toBe(8);
    expect(p.gradAccum).toBe(1);
    expect(p.forecast.peakRssBytes).toBeLessThanOrEqual(8000 * 2 ** 20);
    expect(p.forecast.stepMs).toBeGreaterThan(0);
  });

  it('shrinks micro-batches (the same gradient), then windows, to fit a tighter budget; refuses what cannot fit', () => {
    const roomy = plan(base, dev(8000));
    // a budget that the default exits at micro-batch 4 just fit (independent of the fitted coefficients)
    const smaller = plan({ ...base, microBatch: 4 }, dev(8000));
    expect(smaller.forecast.peakRssBytes).toBeLessThan(roomy.forecast.peakRssBytes);
    const tight = plan(base, dev(Math.ceil(smaller.forecast.peakRssBytes / 2 ** 20)));
    expect(tight.fits).toBe(true);
    expect(tight.exitLayers).toEqual(roomy.exitLayers); // accumulation first: the windows stay
    expect(tight.microBatch).toBe(4);
    expect(tight.microBatch * tight.gradAccum).toBe(8);
    // below what micro-batch 1 needs, windows get shallower (rank-16 heads: more exits add little memory)
    const lowRank = { ...base, headRank: 16 };
    const one = plan({ ...lowRank, microBatch: 1 }, dev(8000)).forecast.peakRssBytes;
    const oneLayer = plan({ ...lowRank, microBatch: 1, exitLayers: [0, 1, 2, 3, 4, 5, 6, 7] }, dev(8000)).forecast.peakRssBytes;
    expect(oneLayer).toBeLessThan(one);
    const tighter = plan(lowRank, { ...dev(0), memoryBudgetBytes: (one + oneLayer) / 2 });
    expect(tighter.fits).toBe(true);
    expect(tighter.exitLayers.length).toBeGreaterThan(roomy.exitLayers.length);
    expect(tighter.windowDepth).toBeLessThan(roomy.windowDepth);
    const none = plan(base, dev(50));
    expect(none.fits).toBe(false);
    expect(none.reason).toMatch(/MiB/);
  });

  it('a tensor budget (TF.js peak) is met like the RSS budget, by accumulation first', () => {
    const roomy = plan(base, dev(8000));
    const quarter = plan(base, { ...dev(8000), tensorBudgetBytes: Math.floor(roomy.forecast.peakTfBytes * 0.7) });
    expect(quarter.fits).toBe(true);
    expect(quarter.forecast.peakTfBytes).toBeLessThanOrEqual(roomy.forecast.peakTfBytes * 0.7);
    expect(quarter.exitLayers).toEqual(roomy.exitLayers);
    expect(quarter.microBatch).toBeLessThan(roomy.microBatch);
    const tiny = plan(base, { ...dev(8000), tensorBudgetBytes: 2 ** 20 });
    expect(tiny.fits).toBe(false);
    expect(tiny.reason).toMatch(/needs about \d+ MiB of TF.js tensors, has 1 MiB \(the tensor budget\)/);
    expect(() => plan(base, { ...dev(8000), tensorBudgetBytes: 0 })).toThrow(PlanError);
  });

  it('forecasts less memory and time for Edge-LLM than vanilla LoRA, and less weight memory when compressed', () => {
    const edge = plan(base, dev(8000)),
      vanilla = plan({ ...base, mode: 'vanilla' }, dev(8000));
    expect(vanilla.forecast.activationBytes).toBeGreaterThan(3 * edge.forecast.activationBytes);
    expect(vanilla.forecast.stepMs).toBeGreaterThan(edge.forecast.stepMs);
    const packed = plan({ ...base, policy: { bits: new Array(8).fill(4), sparsity: new Array(8).fill(0.5) } }, dev(8000));
    expect(packed.storage.every((s) => s === 'int4')).toBe(true);
    expect(packed.forecast.weightBytes).toBeLessThan(edge.forecast.weightBytes * 0.6);
    // low-rank exit heads: 4 x (V x d) parameters (x3 with AdamW's moments) become 4 x r (V + d)
    const lowRank = plan({ ...base, headRank: 16 }, dev(8000));
    expect(edge.forecast.trainableBytes - lowRank.forecast.trainableBytes).toBeGreaterThan(
      4 * 3 * 4 * (4096 * 192 - 16 * (4096 + 192)) * 0.99,
    );
    expect(lowRank.forecast.peakTfBytes).toBeLessThan(edge.forecast.peakTfBytes);
  });

  it('an adapted prefix under round_robin runs no prefix layer: faster steps, no cache, one handed-on output per micro-batch', () => {
    const rr = { ...base, schedule: 'round_robin' as const, steps: 2000 };
    const backbone = plan(rr, dev(8000)),
      adapted = plan({ ...rr, prefix: 'adapted' }, dev(8000));
    expect(backbone.prefixCache).toBe(true);
    expect(adapted.prefixCache).toBe(false); // the adapted prefix changes as earlier windows train
    expect(adapted.forecast.prefixCacheBytes).toBe(0);
    const uncached = plan({ ...rr, prefixCache: false }, dev(8000));
    expect(adapted.forecast.stepMs).toBeLessThan(uncached.forecast.stepMs);
    expect(adapted.forecast.flopsPerStep).toBeLessThan(uncached.forecast.flopsPerStep);
    expect(adapted.forecast.activationBytes - uncached.forecast.activationBytes).toBe(8 * 192 * 192 * 4);
    // without round_robin the adapted prefix is recomputed each step, like the backbone's
    const seq = plan({ ...rr, schedule: 'sequential', prefix: 'adapted' }, dev(8000));
    expect(seq.forecast.flopsPerStep).toBe(uncached.forecast.flopsPerStep);
  });

  it('caches the prefix only for runs where a window meets an example again, and that can afford it', () => {
    expect(plan(base, dev(8000)).prefixCache).toBe(false); // 200 x 8 < 4000 examples: one pass
    // sequential, 4 windows, 4 epochs: each window runs for one epoch, so nothing would be read back
    expect(plan({ ...base, steps: 2000 }, dev(8000)).prefixCache).toBe(false);
    const multi = plan({ ...base, steps: 4000 }, dev(8000)); // 8 epochs: each window runs for two
    expect(multi.prefixCache).toBe(true);
    expect(multi.forecast.prefixCacheBytes).toBe(4000 * 192 * 192 * 4); // one depth at a time
    expect(plan({ ...base, steps: 4000, meanSeqLen: 96 }, dev(8000)).forecast.prefixCacheBytes).toBe(4000 * 96 * 192 * 4); // unpadded rows
    expect(plan({ ...base, mode: 'vanilla', steps: 4000 }, dev(8000)).prefixCache).toBe(false);
    // a caller can forbid the cache (the calibration script measures uncached steps)
    const off = plan({ ...base, steps: 4000, prefixCache: false }, dev(8000));
    expect(off.prefixCache).toBe(false);
    expect(off.forecast.prefixCacheBytes).toBe(0);
    expect(off.forecast.stepMs).toBeGreaterThan(multi.forecast.stepMs);
  });

  it('models cache hits per schedule: round-robin windows meet an example at random, so more of their prefix passes miss', () => {
    // sequential: a window's epochs run in a row, only the first misses
    expect(prefixCacheHits(4, 8, 'sequential')).toEqual({ missShare: 0.5, coverage: 1 });
    expect(prefixCacheHits(4, 4, 'sequential').missShare).toBe(1);
    // round robin, 4 windows, 4.5 epochs: 1 - (3/4)^4.5 = 72.6% of examples ever reach a depth; 1.125 visits each
    const rr = prefixCacheHits(4, 4.5, 'round_robin');
    expect(rr.coverage).toBeCloseTo(1 - 0.75 ** 4.5, 10);
    expect(rr.missShare).toBeCloseTo(rr.coverage / 1.125, 10);
    expect(prefixCacheHits(2, 4, 'random').missShare).toBeCloseTo((1 - 0.5 ** 4) / 2, 10);
    // the forecast follows: round-robin keeps each prefix depth an example met (3 depths with exits 1,3,5,7)
    const rrPlan = plan({ ...base, schedule: 'round_robin', steps: 2250, meanSeqLen: 100 }, dev(8000));
    expect(rrPlan.prefixCache).toBe(true);
    expect(rrPlan.forecast.prefixCacheBytes).toBeCloseTo(4000 * 100 * 192 * 4 * 3 * rr.coverage, -2);
  });

  it('charges a frozen prefix layer less than a window layer, and deeper prefixes more', () => {
    const c = {
      actD: 0,
      actF: 0,
      actAtt: 0,
      actLora: 0,
      tfFixed: 0,
      rssBase: 0,
      rssPerTfByte: 1,
      rssAtStart: 0,
      rssLongRun: 0,
      rssPerDataToken: 0,
      mmEfficiency: 1e12,
      prefixPassCost: 0.5,
      msPerLayerPass: 10,
      msPerLayerToken: 0,
      msPerAttScore: 0,
      msPerStep: 0,
      msPerUpdatedParam: 0,
      msPerDequantElem: 0,
    };
    // only the per-layer-equivalent term is non-zero: time = 10 ms x (window layers + 0.5 x prefix layers)
    const one = (exitLayers: number[]) => plan({ ...base, exitLayers, prefixCache: false }, dev(8000), c).forecast.stepMs;
    expect(one([7])).toBeCloseTo(80, 3); // one window of 8 layers, no prefix
    expect(one([3, 7])).toBeCloseTo(10 * (4 + (0.5 * 4) / 2), 3); // windows 0-3 and 4-7 (prefix of 4), averaged
    expect(plan({ ...base, mode: 'vanilla' }, dev(8000), c).forecast.stepMs).toBeCloseTo(80, 3);
  });

  it('sizes activations at the longest example (batches pad to it) and times steps at seqLen', () => {
    // with a per-attention-score term (T^2) whatever the fitted one is, so that activations grow faster than T
    const c = { ...CALIBRATION, actAtt: 1 };
    const typical = plan({ ...base, seqLen: 258 }, dev(8000), c),
      longest = plan({ ...base, seqLen: 258, maxSeqLen: 320 }, dev(8000), c);
    expect(longest.forecast.activationBytes).toBeGreaterThan(typical.forecast.activationBytes * (320 / 258));
    expect(longest.forecast.activationBytes).toBe(plan({ ...base, seqLen: 320 }, dev(8000), c).forecast.activationBytes);
    expect(longest.forecast.peakRssBytes).toBeGreaterThan(typical.forecast.peakRssBytes);
    expect(longest.forecast.stepMs).toBe(typical.forecast.stepMs);
  });

  it('forecasts RSS from the host process base, the data held and the long-run growth', () => {
    const c = { ...CALIBRATION, rssAtStart: 100e6, rssLongRun: 20e6, rssPerDataToken: 24 };
    const cli = plan(base, dev(8000), c).forecast.peakRssBytes;
    // a worker process that holds 75 MB more before the job: the forecast moves by that much
    expect(plan(base, { ...dev(8000), baseRssBytes: 175e6 }, c).forecast.peakRssBytes - cli).toBeCloseTo(75e6, -1);
    // twice the examples: 4000 x 192 tokens more data held in JS
    expect(plan({ ...base, trainExamples: 8000 }, dev(8000), c).forecast.peakRssBytes - cli).toBeCloseTo(4000 * 192 * 24, -1);
    expect(cli - plan(base, dev(8000), { ...c, rssLongRun: 0 }).forecast.peakRssBytes).toBeCloseTo(20e6, -1);
    expect(() => plan(base, { ...dev(8000), baseRssBytes: -1 })).toThrow(PlanError);
  });

  it("scales the non-matmul part of step time, and nothing else, by the device's measured step-time factor", () => {
    const one = plan(base, dev(8000)),
      slow = plan(base, { ...dev(8000), stepTimeFactor: 1.5 });
    expect(slow.forecast.stepMs).toBeGreaterThan(one.forecast.stepMs);
    expect(slow.forecast.stepMs).toBeLessThan(1.5 * one.forecast.stepMs);
    expect(slow.forecast.totalMs / slow.forecast.stepMs).toBeCloseTo(one.forecast.totalMs / one.forecast.stepMs, 9);
    // matmul time follows the SGEMM reading only: a cost model with nothing but matmuls ignores the factor ...
    const matmulOnly = {
      ...CALIBRATION,
      msPerLayerPass: 0,
      msPerLayerToken: 0,
      msPerAttScore: 0,
      msPerStep: 0,
      msPerUpdatedParam: 0,
      msPerDequantElem: 0,
    };
    const mm = plan(base, dev(8000), matmulOnly).forecast.stepMs;
    expect(mm).toBeGreaterThan(0);
    expect(plan(base, { ...dev(8000), stepTimeFactor: 1.5 }, matmulOnly).forecast.stepMs).toBeCloseTo(mm, 9);
    // ... and one without matmul time scales wholly by it
    const noMatmul = { ...CALIBRATION, mmEfficiency: Number.POSITIVE_INFINITY };
    const other = plan(base, dev(8000), noMatmul).forecast.stepMs;
    expect(plan(base, { ...dev(8000), stepTimeFactor: 1.5 }, noMatmul).forecast.stepMs).toBeCloseTo(1.5 * other, 9);
    expect(mm + other).toBeCloseTo(one.forecast.stepMs, 6);
    expect(slow.forecast.peakRssBytes).toBe(one.forecast.peakRssBytes);
    expect(slow.forecast.peakTfBytes).toBe(one.forecast.peakTfBytes);
    expect([slow.microBatch, slow.exitLayers, slow.prefixCache]).toEqual([one.microBatch, one.exitLayers, one.prefixCache]);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => plan(base, { ...dev(8000), stepTimeFactor: bad })).toThrow(/step_time_factor/);
  });

  it('rejects invalid requests', () => {
    expect(() => plan(base, dev(0))).toThrow(PlanError);
    expect(() => plan({ ...base, policy: { bits: [4], sparsity: [0] } }, dev(1000))).toThrow(/layers/);
  });
});

// Real checkpoint shapes (their config.json): TinyLlama-1.1B (untied head) and Llama-3.2-3B (tied, 128k vocab).
const tinyLlama = {
  vocabSize: 32000,
  hiddenSize: 2048,
  intermediateSize: 5632,
  numHiddenLayers: 22,
  numAttentionHeads: 32,
  numKeyValueHeads: 4,
  headDim: 64,
  tieWordEmbeddings: false,
};
const llama32_3b = {
  vocabSize: 128256,
  hiddenSize: 3072,
  intermediateSize: 8192,
  numHiddenLayers: 28,
  numAttentionHeads: 24,
  numKeyValueHeads: 8,
  headDim: 128,
  tieWordEmbeddings: true,
};
const GiB = 2 ** 30;
const wasm = (gib: number): DeviceProfile => ({
  memoryBudgetBytes: gib * GiB,
  threads: 2,
  backend: 'wasm',
  matmulGflops: 150,
  tensorHeapCeilingBytes: tensorHeapCeilingOf('wasm'),
});
const job = (model: PlanInput['model'], extra: Partial<PlanInput> = {}): PlanInput => ({
  model,
  mode: 'edge_llm',
  loraR: 8,
  headRank: 16,
  batchSize: 8,
  seqLen: 256,
  steps: 200,
  trainExamples: 1000,
  ...extra,
});
const int4 = (L: number) => ({ bits: new Array(L).fill(4), sparsity: new Array(L).fill(0.5) });
/** The MiB figures of a refusal's "needs about X MiB of <what>, has Y MiB (<limit>)". */
const figures = (reason: string | undefined, what: string) => {
  const m = new RegExp(`needs about (\\d+) MiB of ${what}, has (\\d+) MiB`).exec(reason ?? '');
  expect(m, reason).not.toBeNull();
  return { needs: Number(m![1]), has: Number(m![2]) };
};

describe('plan: stored dtype and the backend heap ceiling', () => {
  it("knows the wasm backend's ceiling and no other's, and reads a model's stored dtype", () => {
    expect(WASM_TENSOR_HEAP_CEILING_BYTES).toBe(4294901760);
    expect(tensorHeapCeilingOf('wasm')).toBe(4294901760);
    expect(tensorHeapCeilingOf('cpu')).toBeUndefined();
    expect(tensorHeapCeilingOf('tensorflow')).toBeUndefined();
    expect([plannerStoredDtype('BF16'), plannerStoredDtype('F16'), plannerStoredDtype('F32')]).toEqual(['BF16', 'F16', 'F32']);
    expect([plannerStoredDtype(null), plannerStoredDtype('F64')]).toEqual(['F32', 'F32']);
  });

  it('F32 storage is the default: the same plan with and without storedDtype', () => {
    expect(plan({ ...base, storedDtype: 'F32' }, dev(8000))).toEqual(plan(base, dev(8000)));
    const packed = { ...base, policy: int4(8) };
    expect(plan({ ...packed, storedDtype: 'F32' }, dev(8000))).toEqual(plan(packed, dev(8000)));
  });

  it('16-bit storage keeps the embeddings and dense layers out of the TF.js peak, at 2 bytes/param in RSS, plus the widening scratch', () => {
    const f32 = plan(base, dev(8000)).forecast,
      bf16 = plan({ ...base, storedDtype: 'BF16' }, dev(8000)).forecast;
    const linears = 192 * 192 + 2 * 96 * 192 + 192 * 192 + 3 * 512 * 192; // q, k, v, o, gate, up, down
    const embed = 4096 * 192; // tied
    const layerF32 = linears * 4 + 2 * 192 * 4; // + the two norms
    // F32 holds every weight as float32 tensors; BF16 none: the native kernel widens blocks in its own scratch
    expect(dev(8000).backend).toBe('wasm');
    expect(f32.peakTfBytes - bf16.peakTfBytes).toBe(embed * 4 + 8 * layerF32);
    expect(bf16.weightBytes).toBe(embed * 2 + 8 * (linears * 2 + 2 * 192 * 4) + FROZEN_SCRATCH_BYTES);
    expect(f32.weightBytes).toBe(embed * 4 + 8 * layerF32);
    expect(bf16.peakRssBytes).toBeLessThan(f32.peakRssBytes);
    expect(plan({ ...base, storedDtype: 'F16' }, dev(8000)).forecast).toEqual(bf16);
    // without the kernel, the largest weight (the 16-bit head, 4096 x 192) is widened into a tensor and a JS array
    const largest = 4096 * 192 * 4;
    const viaTensor = plan({ ...base, storedDtype: 'BF16' }, { ...dev(8000), frozenKernel: 'tensor' }).forecast;
    expect(viaTensor.peakTfBytes - bf16.peakTfBytes).toBe(largest);
    expect(viaTensor.weightBytes).toBe(embed * 2 + 8 * (linears * 2 + 2 * 192 * 4) + 2 * largest);
    // the tensorflow backend (GPU boxes) has no addon kernel: `tensor` by default
    const tfBackend = plan({ ...base, storedDtype: 'BF16' }, { ...dev(8000), backend: 'tensorflow', frozenKernel: undefined }).forecast;
    expect(tfBackend.weightBytes).toBe(viaTensor.weightBytes);
    expect(frozenKernelIsNative({ backend: 'cpu' })).toBe(true);
    expect(frozenKernelIsNative({ backend: 'wasm', frozenKernel: 'tensor' })).toBe(false);
  });

  it('F32-stored TinyLlama-1.1B is refused on wasm by the heap ceiling, with the figures; the cpu backend has no ceiling', () => {
    const p = plan(job(tinyLlama), wasm(64));
    expect(p.fits).toBe(false);
    const f = figures(p.reason, 'TF.js tensors');
    expect(f.has).toBe(4095); // 4294901760 bytes, rounded down
    expect(f.needs).toBe(Math.ceil(p.forecast.peakTfBytes / 2 ** 20));
    expect(f.needs).toBeGreaterThan(f.has);
    expect(p.reason).toMatch(/wasm backend's heap ceiling/);
    expect(p.reason).not.toMatch(/memory budget/); // 64 GiB of RSS would do
    // 4.4 GB of float32 weights alone: more than the heap holds at any micro-batch or window
    expect(p.forecast.weightBytes).toBeGreaterThan(WASM_TENSOR_HEAP_CEILING_BYTES);
    const cpu = plan(job(tinyLlama), { ...wasm(64), backend: 'cpu', tensorHeapCeilingBytes: undefined });
    expect(cpu.fits).toBe(true);
  });

  it('BF16-stored TinyLlama-1.1B fits a 6 GiB budget on wasm', () => {
    const p = plan(job(tinyLlama, { storedDtype: 'BF16' }), wasm(6));
    expect(p.fits).toBe(true);
    expect(p.forecast.peakTfBytes).toBeLessThanOrEqual(WASM_TENSOR_HEAP_CEILING_BYTES);
    expect(p.forecast.peakRssBytes).toBeLessThanOrEqual(6 * GiB);
    // 1.1 B parameters at 2 bytes (+ one float32 layer), against 4.4 GB as float32
    expect(p.forecast.weightBytes).toBeLessThan(2.5 * GiB);
  });

  it('a 4-bit LUC policy fits TinyLlama-1.1B in 4 GiB, and the Llama-3.2-3B shape in 8 GiB', () => {
    const tl = plan(job(tinyLlama, { policy: int4(22) }), wasm(4));
    expect(tl.fits).toBe(true);
    expect(tl.storage.every((s) => s === 'int4')).toBe(true);
    expect(tl.forecast.peakRssBytes).toBeLessThanOrEqual(4 * GiB);
    const l3 = plan(job(llama32_3b, { storedDtype: 'BF16', policy: int4(28) }), wasm(8));
    expect(l3.fits).toBe(true);
    expect(l3.forecast.peakRssBytes).toBeLessThanOrEqual(8 * GiB);
    expect(l3.forecast.peakTfBytes).toBeLessThanOrEqual(WASM_TENSOR_HEAP_CEILING_BYTES);
    // F32-stored embeddings (1.5 GB tied) in the heap, packed layers outside: fits too
    expect(plan(job(llama32_3b, { policy: int4(28) }), wasm(8)).fits).toBe(true);
  });

  it('a refusal gives the figures of the choice that came closest, not of the last one tried', () => {
    // full exit heads (head_rank 0): each added exit is another trainable lm_head, so more exits need more
    const full = job(tinyLlama, { storedDtype: 'BF16', headRank: 0 });
    const p = plan(full, wasm(64));
    expect(p.fits).toBe(false);
    expect([p.exitLayers.length, p.microBatch]).toEqual([4, 1]);
    const every = plan({ ...full, microBatch: 1, exitLayers: Array.from({ length: 22 }, (_, i) => i) }, wasm(64));
    expect(every.forecast.peakTfBytes).toBeGreaterThan(p.forecast.peakTfBytes);
    expect(figures(p.reason, 'TF.js tensors').needs).toBe(Math.ceil(p.forecast.peakTfBytes / 2 ** 20));
    expect(p.reason).toMatch(/micro-batch 1 and 4 exits/);
  });

  it('BF16-stored Llama-3.2-3B without compression is refused by a 6 GiB RSS budget, with the figures', () => {
    const p = plan(job(llama32_3b, { storedDtype: 'BF16' }), wasm(6));
    expect(p.fits).toBe(false);
    const f = figures(p.reason, 'memory \\(peak RSS\\)');
    expect(f.has).toBe(6144);
    expect(f.needs).toBe(Math.ceil(p.forecast.peakRssBytes / 2 ** 20));
    expect(f.needs).toBeGreaterThan(f.has);
    expect(p.reason).toMatch(/\(the memory budget\)/);
    expect(p.reason).not.toMatch(/heap ceiling/); // its tensors fit the heap: only the RSS is short
    expect(() => plan(base, { ...dev(8000), tensorHeapCeilingBytes: 0 })).toThrow(/tensor_heap_ceiling_bytes/);
  });
});

describe('mode none (retrieval only)', () => {
  it('forecasts a forward pass: no trainable state, 0 steps, one exit; other modes still need steps', () => {
    const p = plan({ ...base, mode: 'none', steps: 0 }, dev(8000));
    const vanilla = plan({ ...base, mode: 'vanilla' }, dev(8000));
    expect(p).toMatchObject({ fits: true, exitLayers: [7], prefixCache: false });
    expect(p.forecast.trainableBytes).toBe(0);
    expect(p.forecast.totalMs).toBe(0);
    expect(p.forecast.activationBytes).toBeLessThan(vanilla.forecast.activationBytes / 4);
    expect(p.forecast.flopsPerStep).toBeLessThan(vanilla.forecast.flopsPerStep / 2);
    expect(() => plan({ ...base, steps: 0 }, dev(8000))).toThrow(PlanError);
  });
});
