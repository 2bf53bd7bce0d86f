// Frozen weights outside the TF.js heap: the native kernel and its JS fallback against a dense matMul, and a
// 16-bit model loaded "stored" against the same model in the heap (logits, LoRA gradients, LUC, adapters).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLlamaConfig, toHfConfig, type LlamaConfig } from '@edgetune/core';
import {
  frozenBytes,
  frozenKernelActive,
  frozenLoraLinear,
  frozenMatMulT,
  gatherRows,
  narrowBf16,
  narrowF16,
  setFrozenNative,
  widenAll,
  type FrozenMatrix,
} from '../../packages/engine/src/backend/frozen.js';
import { loraLinear } from '../../packages/engine/src/backend/fused.js';
import { quantizeWeight } from '../../packages/engine/src/compress/quantize.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { initLlamaWeights, saveModelFolder } from '../../packages/engine/src/model/init.js';
import { attachLora } from '../../packages/engine/src/model/lora.js';
import { compressModel } from '../../packages/engine/src/compress/luc.js';
import { uniformPolicy } from '../../packages/engine/src/compress/policy.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { maxAbs, maxAbsDiff, rng, useTestBackend } from './helpers.js';

const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => maxAbsDiff(a, b) / Math.max(1e-12, maxAbs(b));

function config(o: Partial<LlamaConfig> = {}): LlamaConfig {
  return parseLlamaConfig(
    toHfConfig({
      vocabSize: 64,
      hiddenSize: 32,
      intermediateSize: 48,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 8,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 64,
      attentionBias: false,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: null,
      ...o,
    } as LlamaConfig),
  );
}

describe('frozen matrices', () => {
  beforeAll(useTestBackend);
  afterAll(() => setFrozenNative(true));

  // 300 rows x 70 cols: more than one widening block is not needed for correctness, odd sizes are.
  const rows = 300,
    cols = 70,
    n = 5;
  const r = rng(11);
  const w32 = Float32Array.from({ length: rows * cols }, () => r());
  const x = Float32Array.from({ length: n * cols }, () => r());
  const dy = Float32Array.from({ length: n * rows }, () => r());
  const formats: [string, FrozenMatrix][] = [
    ['F32', { dtype: 'F32', rows, cols, data: w32 }],
    ['BF16', { dtype: 'BF16', rows, cols, data: narrowBf16(w32) }],
    ['F16', { dtype: 'F16', rows, cols, data: narrowF16(w32) }],
    ['int8', quantizeWeight(w32, rows, cols, 8)],
    ['int4 groups of 32', quantizeWeight(w32, rows, cols, 4, 32)],
  ];

  it('the addon has the frozen kernels on this machine', () => {
    expect(frozenKernelActive()).toBe(true);
  });

  for (const native of [true, false]) {
    for (const [name, w] of formats) {
      it(`${name} (${native ? 'native' : 'JS fallback'}): x W^T and its input gradient equal a dense matMul of the widened weight`, () => {
        setFrozenNative(native);
        // one and three rows: the decoding path (dot products over the stored rows)
        for (const m of [1, 3]) {
          const xm = tf.tensor2d(x.subarray(0, m * cols), [m, cols]);
          const got = frozenMatMulT(xm, w),
            want = tf.matMul(xm, tf.tensor2d(widenAll(w), [rows, cols]), false, true);
          expect(relErr(got.dataSync(), want.dataSync()), `${m} rows`).toBeLessThan(1e-5);
          tf.dispose([xm, got, want]);
        }
        const dense = widenAll(w);
        // the widened values are the stored ones: BF16 / F16 within their rounding of the float32 source
        expect(relErr(dense, w32)).toBeLessThan(name === 'F32' ? 1e-7 : name === 'BF16' ? 8e-3 : name === 'F16' ? 1e-3 : 0.2);
        const xt = tf.tensor2d(x, [n, cols]),
          dyt = tf.tensor2d(dy, [n, rows]);
        const W = tf.tensor2d(dense, [rows, cols]);
        const ref = tf.matMul(xt, W, false, true);
        const refGrad = tf.matMul(dyt, W);
        const { value, grads } = tf.valueAndGrads((xi: tf.Tensor) => tf.sum(tf.mul(frozenMatMulT(xi as tf.Tensor2D, w), dyt)))([xt]);
        const y = frozenMatMulT(xt, w);
        expect(relErr(y.dataSync(), ref.dataSync())).toBeLessThan(1e-5);
        expect(relErr(grads[0].dataSync(), refGrad.dataSync())).toBeLessThan(1e-5);
        tf.dispose([xt, dyt, W, ref, refGrad, value, ...grads, y]);
        setFrozenNative(true);
      });
    }
  }

  for (const native of [true, false])
    it(`frozenLoraLinear (${native ? 'native' : 'JS fallback'}): equals loraLinear over the widened weight (same dropout mask), gradients w.r.t. x, A and B too`, () => {
      setFrozenNative(native);
      const w = formats[4][1],
        W = tf.tensor2d(widenAll(w), [rows, cols]);
      const r4 = rng(12);
      const a = tf.tensor2d(
          Float32Array.from({ length: 4 * cols }, () => r4() * 0.3),
          [4, cols],
        ),
        b = tf.tensor2d(
          Float32Array.from({ length: rows * 4 }, () => r4() * 0.3),
          [rows, 4],
        );
      const xt = tf.tensor2d(x, [n, cols]),
        dyt = tf.tensor2d(dy, [n, rows]);
      for (const dropout of [0, 0.3]) {
        const o = { scale: 2, dropout, seed: 7 };
        const f = (lin: (xi: tf.Tensor2D, ai: tf.Tensor2D, bi: tf.Tensor2D) => tf.Tensor2D) =>
          tf.valueAndGrads((xi: tf.Tensor, ai: tf.Tensor, bi: tf.Tensor) =>
            tf.sum(tf.mul(lin(xi as tf.Tensor2D, ai as tf.Tensor2D, bi as tf.Tensor2D), dyt)),
          )([xt, a, b]);
        const got = f((xi, ai, bi) => frozenLoraLinear(xi, w, ai, bi, o)),
          want = f((xi, ai, bi) => loraLinear(xi, W, ai, bi, o));
        expect(relErr(got.value.dataSync(), want.value.dataSync()), `dropout ${dropout}`).toBeLessThan(1e-5);
        got.grads.forEach((g, i) =>
          expect(relErr(g.dataSync(), want.grads[i].dataSync()), `dropout ${dropout} grad ${i}`).toBeLessThan(1e-5),
        );
        tf.dispose([got.value, ...got.grads, want.value, ...want.grads]);
      }
      expect(() => frozenLoraLinear(xt, w, b, a, { scale: 1, dropout: 0 })).toThrow(/do not fit weight/);
      tf.dispose([W, a, b, xt, dyt]);
      setFrozenNative(true);
    });

  it('frozenLoraLinear keeps only its input and the LoRA factors for backward (no [n, out] sums, no dropped copy of x)', () => {
    const w = formats[1][1];
    const a = tf.randomNormal([4, cols]) as tf.Tensor2D,
      b = tf.randomNormal([rows, 4]) as tf.Tensor2D,
      xt = tf.randomNormal([64, cols]) as tf.Tensor2D;
    const saved = (lin: (xi: tf.Tensor2D) => tf.Tensor2D) => {
      let bytes = 0;
      tf.grad((xi: tf.Tensor) => {
        const tape = (tf.engine() as unknown as { state: { activeTape: { saved?: tf.Tensor[] }[] } }).state.activeTape;
        const from = tape.length;
        const y = lin(xi as tf.Tensor2D);
        const ids = new Map<object, number>();
        for (const node of tape.slice(from)) for (const t of node.saved ?? []) ids.set(t.dataId, t.size * 4);
        bytes = [...ids.values()].reduce((p, q) => p + q, 0);
        return tf.sum(y);
      })(xt).dispose();
      return bytes;
    };
    const o = { scale: 1, dropout: 0.1, seed: 3 };
    // x, A and B themselves
    expect(saved((xi) => frozenLoraLinear(xi, w, a, b, o))).toBe((64 * cols + 4 * cols + rows * 4) * 4);
    // the same product as separate ops keeps at least the two [64, rows] summands of its add
    const ops = (xi: tf.Tensor2D) =>
      tf.add(frozenMatMulT(xi, w), tf.matMul(tf.mul(tf.matMul(xi, a, false, true), o.scale), b, false, true)) as tf.Tensor2D;
    expect(saved(ops)).toBeGreaterThanOrEqual(2 * 64 * rows * 4);
    tf.dispose([a, b, xt]);
  });

  it('gathers embedding rows of every format and refuses an id outside the matrix', () => {
    for (const [, w] of formats) {
      const dense = widenAll(w);
      const got = gatherRows(w, [3, 0, 299, 3]);
      expect(Array.from(got.subarray(0, cols))).toEqual(Array.from(dense.subarray(3 * cols, 4 * cols)));
      expect(Array.from(got.subarray(2 * cols, 3 * cols))).toEqual(Array.from(dense.subarray(299 * cols, 300 * cols)));
      expect(() => gatherRows(w, [300])).toThrow(/token id 300 outside the embedding's 300 rows/);
    }
  });

  it('refuses an input of the wrong width', () => {
    const xt = tf.zeros([2, cols + 1]) as tf.Tensor2D;
    expect(() => frozenMatMulT(xt, formats[1][1])).toThrow(/does not fit weight \[300, 70\]/);
    xt.dispose();
  });
});

describe('a BF16 model kept stored outside the heap', () => {
  let dir: string;
  beforeAll(async () => {
    await useTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'edgetune-frozen-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [label, c] of [
    ['llama, untied head', config()],
    ['qwen2 biases, tied head', config({ modelType: 'qwen2', tieWordEmbeddings: true })],
  ] as [string, LlamaConfig][]) {
    it(`${label}: same logits and LoRA gradients as in the heap, with no weight in the heap`, () => {
      const md = join(dir, label.replace(/\W+/g, '-'));
      const init = initLlamaWeights(c, new Rng(3));
      saveModelFolder(md, c, init as Map<string, tf.Tensor>, 'BF16');
      tf.dispose([...init.values()]);
      const before = tf.memory().numBytes;
      const stored = LlamaModel.load(md);
      const heapBytes = tf.memory().numBytes - before;
      const heap = LlamaModel.load(md, { weights: 'heap' });
      const lin = stored.layers[1].linears.up_proj;
      expect(lin.stored?.dtype).toBe('BF16');
      expect(heap.layers[1].linears.up_proj.stored).toBeUndefined();
      // only norms (and biases) are tensors: far less than the stored matrices' bytes
      expect(stored.storedBytes()).toBeGreaterThan(2 * c.vocabSize * c.hiddenSize);
      expect(heapBytes).toBeLessThan(stored.storedBytes() / 4);
      expect(stored.paramCount()).toBe(heap.paramCount());

      const ids = [
        [1, 5, 9, 3, 17, 30, 2, 8],
        [4, 4, 60, 7, 1, 0, 12, 13],
      ];
      const a = stored.forward(ids).logits,
        b = heap.forward(ids).logits;
      expect(relErr(a.dataSync(), b.dataSync())).toBeLessThan(1e-5);
      // lazy: the layers' linears stay in the file (no bytes held) and compute the same logits
      const lazy = LlamaModel.load(md, { weights: 'lazy' });
      const ll = lazy.layers[1].linears.up_proj.stored;
      expect(ll && 'file' in ll && ll.begin > 0).toBe(true);
      expect(lazy.storedBytes()).toBe(frozenBytes(lazy.embedTokens) + (c.tieWordEmbeddings ? 0 : frozenBytes(lazy.lmHead)));
      const z = lazy.forward(ids).logits;
      expect(Array.from(z.dataSync())).toEqual(Array.from(a.dataSync()));
      lazy.dispose();
      tf.dispose([a, b, z]);

      // LoRA on every linear, B made non-zero: gradients of A and B through the stored weights
      const lora = {
        r: 4,
        alpha: 8,
        dropout: 0,
        targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      };
      const grads = (m: LlamaModel) => {
        const lins = attachLora(m, lora, new Rng(9));
        for (const l of lins) l.lora!.B.assign(tf.fill(l.lora!.B.shape, 0.01));
        const vars = lins.flatMap((l) => [l.lora!.A, l.lora!.B]);
        const { value, grads: g } = tf.variableGrads(() => tf.mean(tf.square(m.forward(ids, { lora: true }).logits)) as tf.Scalar, vars);
        const flat = vars.map((v) => Array.from(g[v.name].dataSync()));
        tf.dispose([value, ...Object.values(g)]);
        return flat;
      };
      const gs = grads(stored),
        gh = grads(heap);
      for (let i = 0; i < gs.length; i++) expect(relErr(gs[i], gh[i])).toBeLessThan(1e-4);
      stored.dispose();
      heap.dispose();
    });
  }

  it('LUC packs a stored model to the same weights as the heap model, and drops the 16-bit copy', () => {
    const c = config();
    const md = join(dir, 'luc');
    const init = initLlamaWeights(c, new Rng(4));
    saveModelFolder(md, c, init as Map<string, tf.Tensor>, 'BF16');
    tf.dispose([...init.values()]);
    const calib = { ids: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]], description: 'test' };
    const policy = { ...uniformPolicy(c.numHiddenLayers, 0.5, 4), sparsityRule: 'uniform', bitsRule: 'uniform' } as never;
    const stored = LlamaModel.load(md),
      heap = LlamaModel.load(md, { weights: 'heap' });
    compressModel(stored, calib, policy);
    compressModel(heap, calib, policy);
    const ls = stored.layers[0].linears.gate_proj,
      lh = heap.layers[0].linears.gate_proj;
    expect(ls.stored).toBeUndefined();
    expect(ls.packed?.bits).toBe(4);
    expect(Array.from(ls.packed!.data)).toEqual(Array.from(lh.packed!.data));
    const a = stored.forward([[1, 2, 3, 4]]).logits,
      b = heap.forward([[1, 2, 3, 4]]).logits;
    expect(relErr(a.dataSync(), b.dataSync())).toBeLessThan(1e-5);
    tf.dispose([a, b]);
    stored.dispose();
    heap.dispose();
  });
});
