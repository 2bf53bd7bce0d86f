// Fused training ops of packages/engine/src/backend/fused.ts: the native kernels (wasm + addon)
// against the TF.js compositions they replace and against float64 references, forward and
// gradients, on odd sizes, GQA/MHA/MQA, with and without key padding; the AdamW update, dropout,
// and the wasm GatherV2 / Cast overrides. Also the LLaMA layer with fused ops vs the compositions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import {
  attention,
  attentionOps,
  dropout,
  fusedKernelsActive,
  initBackend,
  loadNativeAddon,
  loraLinear,
  loraLinearOps,
  rmsNorm,
  rmsNormOps,
  ropeHeads,
  ropeHeadsOps,
  sparseSoftmaxCrossEntropy,
  sumOfSquares,
  swiglu,
  swigluOps,
} from '../../packages/engine/src/backend/index.js';
import { AdamW, clipByGlobalNorm } from '../../packages/engine/src/tune/optim.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { initLlamaWeights } from '../../packages/engine/src/model/init.js';
import { attachLora } from '../../packages/engine/src/model/lora.js';
import type { LlamaConfig } from '../../packages/core/src/hf-config.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { maxAbs, maxAbsDiff, rng } from './helpers.js';

const hasAddon = loadNativeAddon() !== null; // with or without OpenBLAS: the fused kernels are the same

const rand = (shape: number[], seed: number, scale = 1) => {
  const r = rng(seed),
    n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => r() * scale),
    shape,
    'float32',
  );
};

/** |got - want| <= tol * max(max|want|, floor) elementwise-max. */
function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, floor = 1e-3): void {
  const err = maxAbsDiff(got, want),
    scale = Math.max(maxAbs(want), floor);
  expect(err, `${what}: max abs error ${err} vs scale ${scale}`).toBeLessThanOrEqual(tol * scale);
}

/**
 * Value and gradients of sum(f(xs) * R) for a fixed random R: exercises the backward pass with a
 * non-trivial upstream gradient.
 */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed: number): { y: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const y = f(...xs);
    const R = rand(y.shape, seed);
    const g = tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(f(...args), R)))(xs);
    return { y: y.dataSync() as Float32Array, grads: g.map((t) => t.dataSync() as Float32Array) };
  });
}

function compareOps(
  fused: (...xs: tf.Tensor[]) => tf.Tensor,
  ops: (...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  what: string,
  tol = 2e-5,
): void {
  expect(fusedKernelsActive()).toBe(true);
  const a = valueAndGrads(fused, xs, 99),
    b = valueAndGrads(ops, xs, 99);
  close(a.y, b.y, tol, `${what} forward`);
  a.grads.forEach((g, i) => close(g, b.grads[i], tol, `${what} grad ${i}`));
}

// ---- float64 references ----

function refRmsNorm(x: Float32Array, w: Float32Array, n: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i * d + j] ** 2;
    const r = 1 / Math.sqrt(s / d + eps);
    for (let j = 0; j < d; j++) y[i * d + j] = x[i * d + j] * r * w[j];
  }
  return y;
}

/** softmax(scale q.k^T + causal/key mask) v, [B,H,T,dh]; fully masked rows: uniform over all T. */
function refAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  H: number,
  KV: number,
  T: number,
  dh: number,
  scale: number,
  km: number[] | null,
): Float64Array {
  const out = new Float64Array(B * H * T * dh),
    rep = H / KV;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++) {
        const g = Math.floor(h / rep),
          p = new Float64Array(T);
        const allowed = (s: number) => s <= t && km?.[b * T + s] !== 0;
        let any = false;
        for (let s = 0; s < T; s++) any ||= allowed(s);
        for (let s = 0; s < T; s++) {
          if (any && !allowed(s)) {
            p[s] = -Infinity;
            continue;
          }
          let z = 0;
          for (let j = 0; j < dh; j++) z += q[((b * H + h) * T + t) * dh + j] * k[((b * KV + g) * T + s) * dh + j];
          p[s] = any ? z * scale : 0;
        }
        const m = Math.max(...p);
        let sum = 0;
        for (let s = 0; s < T; s++) {
          p[s] = Math.exp(p[s] - m);
          sum += p[s];
        }
        for (let j = 0; j < dh; j++) {
          let acc = 0;
          for (let s = 0; s < T; s++) acc += (p[s] / sum) * v[((b * KV + g) * T + s) * dh + j];
          out[((b * H + h) * T + t) * dh + j] = acc;
        }
      }
  return out;
}

function ropeTables(T: number, dh: number, theta = 10000): { cos: tf.Tensor2D; sin: tf.Tensor2D; c: Float64Array; s: Float64Array } {
  const c = new Float64Array(T * dh),
    s = new Float64Array(T * dh),
    half = dh / 2;
  for (let t = 0; t < T; t++)
    for (let i = 0; i < half; i++) {
      const a = t * theta ** (-(2 * i) / dh);
      c[t * dh + i] = c[t * dh + i + half] = Math.cos(a);
      s[t * dh + i] = s[t * dh + i + half] = Math.sin(a);
    }
  return { cos: tf.tensor2d(Float32Array.from(c), [T, dh]), sin: tf.tensor2d(Float32Array.from(s), [T, dh]), c, s };
}

describe.skipIf(!hasAddon)('fused ops: native kernels vs TF.js compositions and float64 references', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('rmsNorm: forward vs float64, forward and gradients (x, w) vs the composition', () => {
    for (const [n, d, seed] of [
      [7, 13, 1],
      [33, 64, 2],
      [1, 1, 3],
    ]) {
      const x = rand([n, d], seed, 3),
        w = rand([d], seed + 100);
      const y = tf.tidy(() => rmsNorm(x as tf.Tensor2D, w as tf.Tensor1D, 1e-5).dataSync());
      close(y, refRmsNorm(x.dataSync() as Float32Array, w.dataSync() as Float32Array, n, d, 1e-5), 1e-5, 'rmsNorm vs float64');
      compareOps(
        (a, b) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5),
        (a, b) => rmsNormOps(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5),
        [x, w],
        `rmsNorm ${n}x${d}`,
      );
      tf.dispose([x, w]);
    }
  });

  it('swiglu: forward and gradients vs the composition, large |g| included', () => {
    const g = rand([9, 31], 5, 12),
      u = rand([9, 31], 6, 2);
    compareOps(
      (a, b) => swiglu(a as tf.Tensor2D, b as tf.Tensor2D),
      (a, b) => swigluOps(a as tf.Tensor2D, b as tf.Tensor2D),
      [g, u],
      'swiglu',
    );
    tf.dispose([g, u]);
  });

  it('ropeHeads: rotation vs float64, head split, gradients vs the composition', () => {
    const B = 2,
      T = 5,
      n = 3,
      dh = 6;
    const { cos, sin, c, s } = ropeTables(T, dh);
    const x = rand([B * T, n * dh], 7);
    const xv = x.dataSync();
    const y = tf.tidy(() => ropeHeads(x as tf.Tensor2D, { batch: B, seq: T, heads: n, headDim: dh, cos, sin }).dataSync());
    const want = new Float64Array(B * n * T * dh);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let h = 0; h < n; h++)
          for (let j = 0; j < dh; j++) {
            const xi = (i: number) => xv[(b * T + t) * n * dh + h * dh + i];
            const rot = j < dh / 2 ? -xi(j + dh / 2) : xi(j - dh / 2);
            want[((b * n + h) * T + t) * dh + j] = xi(j) * c[t * dh + j] + rot * s[t * dh + j];
          }
    close(y, want, 1e-6, 'rope vs float64');
    const o = { batch: B, seq: T, heads: n, headDim: dh };
    compareOps(
      (a) => ropeHeads(a as tf.Tensor2D, { ...o, cos, sin }),
      (a) => ropeHeadsOps(a as tf.Tensor2D, { ...o, cos, sin }),
      [x],
      'rope',
    );
    compareOps(
      (a) => ropeHeads(a as tf.Tensor2D, o),
      (a) => ropeHeadsOps(a as tf.Tensor2D, o),
      [x],
      'head split',
    );
    tf.dispose([x, cos, sin]);
  });

  const attnCases: [string, number, number, number, number, number, number[] | null][] = [
    ['GQA 4:2', 2, 4, 2, 7, 5, null],
    ['MHA', 1, 3, 3, 9, 8, null],
    ['MQA 4:1', 2, 4, 1, 6, 3, null],
    // batch 0 left-padded (its first rows have no allowed key), batch 1 right-padded
    ['GQA + key padding', 2, 4, 2, 7, 5, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]],
    // T above the causal block (64): blocked products, a partial last block
    ['GQA, T=150 (blocked)', 1, 4, 2, 150, 8, null],
    [
      'GQA, T=150, right padding (blocked) / left padding (whole rows)',
      2,
      2,
      1,
      150,
      4,
      [
        ...Array(150)
          .fill(1)
          .map((_, i) => (i < 140 ? 1 : 0)),
        ...Array(150)
          .fill(1)
          .map((_, i) => (i < 3 ? 0 : 1)),
      ],
    ],
  ];
  for (const [name, B, H, KV, T, dh, km] of attnCases) {
    it(`attention ${name}: forward vs float64, merged and split layouts, gradients vs the composition`, () => {
      const q = rand([B, H, T, dh], 11, 2),
        k = rand([B, KV, T, dh], 12, 2),
        v = rand([B, KV, T, dh], 13);
      const keyMask = km ? tf.tensor2d(km, [B, T]) : null;
      const scale = 1 / Math.sqrt(dh);
      const want = refAttention(
        q.dataSync() as Float32Array,
        k.dataSync() as Float32Array,
        v.dataSync() as Float32Array,
        B,
        H,
        KV,
        T,
        dh,
        scale,
        km,
      );
      const got = tf.tidy(() => attention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, { scale, keyMask }).dataSync());
      close(got, want, 1e-5, `${name} vs float64`);
      for (const merged of [false, true]) {
        const o = { scale, keyMask, merged };
        compareOps(
          (a, b, c) => attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, o),
          (a, b, c) => attentionOps(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, o),
          [q, k, v],
          `${name} merged=${merged}`,
          5e-5,
        );
      }
      tf.dispose([q, k, v]);
      keyMask?.dispose();
    });
  }

  it('2 fused threads (the pool) give the single-threaded results on sizes that split', () => {
    const addon = loadNativeAddon()!;
    const run = () =>
      tf.tidy(() => {
        const q = rand([2, 4, 80, 8], 91),
          k = rand([2, 2, 80, 8], 92),
          v = rand([2, 2, 80, 8], 93);
        const x = rand([300, 250], 94),
          w = rand([250], 95);
        const a = valueAndGrads(
          (qq, kk, vv) => attention(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, { scale: 0.3, merged: true }),
          [q, k, v],
          96,
        );
        const b = valueAndGrads((xx, ww) => rmsNorm(xx as tf.Tensor2D, ww as tf.Tensor1D, 1e-5), [x, w], 97);
        const c = valueAndGrads((xx) => swiglu(xx as tf.Tensor2D, tf.sin(xx) as tf.Tensor2D), [x], 98);
        const labels = tf.tensor1d(
          Int32Array.from({ length: 300 }, (_, i) => (i % 7 === 0 ? -100 : (i * 37) % 250)),
          'int32',
        );
        const e = valueAndGrads((xx) => sparseSoftmaxCrossEntropy(tf.mul(xx, 3) as tf.Tensor2D, labels), [x], 99);
        return [a, b, c, e];
      });
    const before = addon.getFusedThreads!();
    try {
      addon.setFusedThreads!(1);
      const one = run();
      addon.setFusedThreads!(2);
      const two = run();
      two.forEach((r, i) => {
        close(r.y, one[i].y, 1e-6, `threads op ${i}`);
        r.grads.forEach((g, j) => close(g, one[i].grads[j], 1e-6, `threads op ${i} grad ${j}`));
      });
    } finally {
      addon.setFusedThreads!(before);
    }
  });

  it('attention keeps no tensors after a gradient (tape saves released)', () => {
    const q = rand([1, 2, 4, 3], 1),
      k = rand([1, 1, 4, 3], 2),
      v = rand([1, 1, 4, 3], 3);
    const before = tf.memory().numTensors;
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { scale: 0.5 })),
    )([q, k, v]);
    tf.dispose(g);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, v]);
  });

  it('dropout: rate, scale, determinism per seed, and the gradient uses the same mask', () => {
    const x = tf.add(rand([50, 41], 21), 3); // no zeros
    const rate = 0.3;
    const y1 = tf.tidy(() => dropout(x, rate, 17).dataSync());
    const y2 = tf.tidy(() => dropout(x, rate, 17).dataSync());
    const y3 = tf.tidy(() => dropout(x, rate, 18).dataSync());
    expect(Array.from(y1)).toEqual(Array.from(y2));
    expect(Array.from(y1)).not.toEqual(Array.from(y3));
    const xv = x.dataSync();
    let kept = 0;
    for (let i = 0; i < xv.length; i++) {
      if (y1[i] !== 0) {
        kept++;
        expect(Math.abs(y1[i] - xv[i] / (1 - rate))).toBeLessThanOrEqual(1e-6 * Math.abs(xv[i]));
      }
    }
    expect(Math.abs(kept / xv.length - (1 - rate))).toBeLessThan(0.03);
    const dx = tf.tidy(() =>
      tf
        .grad((a: tf.Tensor) => tf.sum(dropout(a, rate, 17)))(x)
        .dataSync(),
    );
    for (let i = 0; i < xv.length; i++) expect(dx[i]).toBeCloseTo(y1[i] !== 0 ? 1 / (1 - rate) : 0, 6);
    expect(dropout(x, 0, 1)).toBe(x);
    x.dispose();
  });

  it('loraLinear: no dropout vs the composition; with dropout vs dropout + composition (same mask)', () => {
    const n = 37,
      inD = 19,
      outD = 23,
      r = 4;
    const x = rand([n, inD], 31),
      w = rand([outD, inD], 32, 0.3),
      a = rand([r, inD], 33, 0.3),
      b = rand([outD, r], 34, 0.3);
    const opt = { scale: 2, dropout: 0 };
    compareOps(
      (...t) => loraLinear(...(t as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]), opt),
      (...t) => loraLinearOps(...(t as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]), opt),
      [x, w, a, b],
      'loraLinear',
    );
    const od = { scale: 2, dropout: 0.25, seed: 5 };
    const composed = (xx: tf.Tensor, ww: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor) =>
      tf.add(tf.matMul(xx, ww, false, true), tf.matMul(tf.mul(tf.matMul(dropout(xx, 0.25, 5), aa, false, true), 2), bb, false, true));
    compareOps(
      (...t) => loraLinear(...(t as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]), od),
      composed,
      [x, w, a, b],
      'loraLinear dropout',
    );
    tf.dispose([x, w, a, b]);
  });

  it('AdamW: the in-place native update equals the TF.js composition (with and without weight decay)', () => {
    for (const wd of [0, 0.1]) {
      const w0 = rand([17, 5], 41),
        opt = new AdamW({ lr: 0.01, weightDecay: wd, beta2: 0.95 });
      const w = tf.variable(tf.clone(w0), true, `adamw-test-${wd}`);
      const ref = { w: w0.dataSync().slice() as Float32Array, m: new Float32Array(85), v: new Float32Array(85) };
      for (let t = 1; t <= 3; t++) {
        const g = rand([17, 5], 50 + t);
        opt.apply([w], { [w.name]: g }, 0.01);
        // the composition of optim.ts, in TF.js float32
        const [m1, v1, w1] = tf.tidy(() => {
          const gm = tf.tensor(ref.m, [17, 5]),
            gv = tf.tensor(ref.v, [17, 5]),
            gw = tf.tensor(ref.w, [17, 5]);
          const m = tf.add(tf.mul(gm, 0.9), tf.mul(g, 1 - 0.9)),
            v = tf.add(tf.mul(gv, 0.95), tf.mul(tf.square(g), 1 - 0.95));
          const c1 = 1 - 0.9 ** t,
            c2 = 1 - 0.95 ** t;
          let nw = tf.sub(gw, tf.mul(tf.div(m, tf.add(tf.div(tf.sqrt(v), Math.sqrt(c2)), 1e-8)), 0.01 / c1));
          if (wd > 0) nw = tf.sub(nw, tf.mul(gw, 0.01 * wd));
          return [m.dataSync(), v.dataSync(), nw.dataSync()] as Float32Array[];
        });
        ref.m = m1;
        ref.v = v1;
        ref.w = w1;
        g.dispose();
      }
      close(w.dataSync(), ref.w, 1e-6, `adamw wd=${wd} weights`);
      const st = opt.stateTensors().tensors;
      close(st.get(`${w.name}.exp_avg`)!.dataSync(), ref.m, 1e-6, 'exp_avg');
      close(st.get(`${w.name}.exp_avg_sq`)!.dataSync(), ref.v, 1e-6, 'exp_avg_sq');
      opt.dispose();
      tf.dispose([w, w0]);
    }
  });

  it('AdamW never mutates data another tensor shares (falls back to the composition)', () => {
    const w = tf.variable(rand([8], 61), true, 'adamw-alias');
    const opt = new AdamW({ lr: 0.1 });
    const g = rand([8], 62);
    opt.apply([w], { [w.name]: g }, 0.1); // first step: moments created, w now owns its data
    const alias = tf.reshape(w, [2, 4]); // shares w's data
    const before = alias.dataSync().slice();
    opt.apply([w], { [w.name]: g }, 0.1);
    expect(Array.from(alias.dataSync())).toEqual(Array.from(before));
    expect(Array.from(w.dataSync())).not.toEqual(Array.from(before));
    tf.dispose([alias, g, w]);
    opt.dispose();
  });

  it('clipByGlobalNorm / sumOfSquares (native float64) match TF.js', () => {
    const grads = { a: rand([13, 7], 71, 3), b: rand([5], 72) };
    const want = tf.tidy(() => tf.addN([tf.sum(tf.square(grads.a)), tf.sum(tf.square(grads.b))]).dataSync()[0]);
    expect(Math.abs(sumOfSquares([grads.a, grads.b])! - want)).toBeLessThanOrEqual(1e-5 * want);
    const norm = clipByGlobalNorm(grads, 1);
    expect(Math.abs(norm - Math.sqrt(want))).toBeLessThanOrEqual(1e-5 * norm);
    const after = tf.tidy(() => Math.sqrt(tf.addN([tf.sum(tf.square(grads.a)), tf.sum(tf.square(grads.b))]).dataSync()[0]));
    expect(after).toBeCloseTo(1, 4);
    tf.dispose(Object.values(grads));
  });

  it('GatherV2 (wasm block copy): rows, repeats, int32 data, other axes, out-of-range', () => {
    const x = rand([6, 5], 81),
      idx = tf.tensor1d([5, 0, 0, 3], 'int32');
    const got = tf.tidy(() => tf.gather(x, idx).arraySync() as number[][]);
    const xs = x.arraySync() as number[][];
    expect(got).toEqual([xs[5], xs[0], xs[0], xs[3]]);
    const xi = tf.tensor2d(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      [3, 2],
      'int32',
    );
    expect(tf.tidy(() => tf.gather(xi, tf.tensor2d([[2, 1]], [1, 2], 'int32')).arraySync())).toEqual([
      [
        [5, 6],
        [3, 4],
      ],
    ]);
    expect(tf.tidy(() => tf.gather(x, tf.tensor1d([4, 1], 'int32'), 1).arraySync())).toEqual(xs.map((r) => [r[4], r[1]]));
    const before = tf.memory().numTensors;
    expect(() => tf.gather(x, tf.tensor1d([6], 'int32'))).toThrow(/not in \[0, 5\]/);
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before + 1); // the index tensor only
    tf.dispose([x, idx, xi]);
  });

  it('Add: native for same-shape float32, stock for broadcasts and int32', () => {
    const a = rand([33, 17], 101),
      b = rand([33, 17], 102),
      c = rand([17], 103);
    const av = a.dataSync(),
      bv = b.dataSync(),
      cv = c.dataSync();
    const same = tf.tidy(() => tf.add(a, b).dataSync());
    const bc = tf.tidy(() => tf.add(a, c).dataSync());
    for (let i = 0; i < av.length; i++) {
      expect(same[i]).toBe(Math.fround(av[i] + bv[i]));
      expect(bc[i]).toBe(Math.fround(av[i] + cv[i % 17]));
    }
    expect(tf.tidy(() => Array.from(tf.add(tf.tensor1d([1, 2], 'int32'), tf.tensor1d([3, 4], 'int32')).dataSync()))).toEqual([4, 6]);
    tf.dispose([a, b, c]);
  });

  it('Cast to the same dtype aliases; other casts convert', () => {
    const x = tf.tensor1d([1.5, -2, 3]);
    const y = tf.cast(x, 'float32');
    expect(y.dataId).toBe(x.dataId);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1.5, -2, 3]);
    expect(Array.from(tf.cast(y, 'int32').dataSync())).toEqual([1, -2, 3]);
    y.dispose();
  });
});

describe.skipIf(!hasAddon)('fused ops on the cpu backend (native kernels on its Float32Arrays)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', quiet: true });
  });
  afterAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('rmsNorm, swiglu, rope, attention (padded GQA) and loraLinear match the compositions', () => {
    expect(tf.getBackend()).toBe('cpu');
    const x = rand([6, 12], 1),
      w = rand([12], 2);
    compareOps(
      (a, b) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-6),
      (a, b) => rmsNormOps(a as tf.Tensor2D, b as tf.Tensor1D, 1e-6),
      [x, w],
      'cpu rmsNorm',
    );
    const cx = tf.cos(x);
    compareOps(
      (a, b) => swiglu(a as tf.Tensor2D, b as tf.Tensor2D),
      (a, b) => swigluOps(a as tf.Tensor2D, b as tf.Tensor2D),
      [x, cx],
      'cpu swiglu',
    );
    const { cos, sin } = ropeTables(3, 4);
    const o = { batch: 2, seq: 3, heads: 3, headDim: 4, cos, sin };
    compareOps(
      (a) => ropeHeads(a as tf.Tensor2D, o),
      (a) => ropeHeadsOps(a as tf.Tensor2D, o),
      [x],
      'cpu rope',
    );
    const q = rand([2, 4, 5, 3], 3),
      k = rand([2, 2, 5, 3], 4),
      v = rand([2, 2, 5, 3], 5);
    const ao = {
      scale: 0.5,
      keyMask: tf.tensor2d([
        [0, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
      ]),
      merged: true,
    };
    compareOps(
      (a, b, c) => attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, ao),
      (a, b, c) => attentionOps(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, ao),
      [q, k, v],
      'cpu attention',
      5e-5,
    );
    const W = rand([7, 12], 6, 0.3),
      A = rand([2, 12], 7),
      Bm = rand([7, 2], 8);
    const lo = { scale: 1.5, dropout: 0 };
    compareOps(
      (...t) => loraLinear(...(t as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]), lo),
      (...t) => loraLinearOps(...(t as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]), lo),
      [x, W, A, Bm],
      'cpu loraLinear',
    );
    tf.dispose([x, w, cx, cos, sin, q, k, v, ao.keyMask, W, A, Bm]);
  });
});

// ---- the LLaMA layer: fused kernels vs compositions (addon off) ----

const CFG: LlamaConfig = {
  vocabSize: 50,
  hiddenSize: 24,
  intermediateSize: 40,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 6,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 64,
  attentionBias: false,
  mlpBias: false,
  bosTokenId: 1,
  eosTokenId: 2,
  padTokenId: 3,
  hiddenAct: 'silu',
};

/** Loss and gradients (LoRA factors, or every weight) of a 2-layer model, on the current backend setup. */
function modelRun(lora: boolean, mask: number[] | null): { loss: number; grads: Float32Array[] } {
  return tf.tidy(() => {
    const vars = initLlamaWeights(CFG, new Rng(7));
    const model = new LlamaModel(CFG, vars as Map<string, tf.Tensor>);
    let trainable: tf.Variable[] = [...vars.values()];
    if (lora) {
      const lins = attachLora(
        model,
        { r: 3, alpha: 6, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
        new Rng(8),
      );
      for (const l of lins) l.lora!.B.assign(rand(l.lora!.B.shape, l.lora!.B.size, 0.2));
      trainable = lins.flatMap((l) => [l.lora!.A, l.lora!.B]);
    }
    const B = 2,
      T = 7,
      r = new Rng(9);
    const ids = tf.tensor1d(
      Int32Array.from({ length: B * T }, () => r.int(CFG.vocabSize)),
      'int32',
    );
    const R = rand([B * T, CFG.hiddenSize], 10);
    const ctx = model.context({ batch: B, seq: T, attentionMask: mask ?? undefined });
    const { value, grads } = tf.variableGrads(() => {
      let h = model.embed(ids);
      for (let l = 0; l < CFG.numHiddenLayers; l++) h = model.layer(l, h, ctx, lora);
      return tf.sum(tf.mul(model.rmsNorm(h, model.finalNorm), R)) as tf.Scalar;
    }, trainable);
    const out = { loss: value.dataSync()[0], grads: trainable.map((v) => grads[v.name].dataSync() as Float32Array) };
    model.dispose();
    tf.dispose(trainable);
    return out;
  });
}

describe.skipIf(!hasAddon)('LlamaModel.layer: fused native path vs TF.js compositions', () => {
  afterAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('loss and gradients agree (full parameters and LoRA, causal and padded)', async () => {
    const cases: [boolean, number[] | null][] = [
      [false, null],
      [true, null],
      [true, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]],
    ];
    await initBackend({ backend: 'wasm', quiet: true });
    expect(fusedKernelsActive()).toBe(true);
    const fused = cases.map(([lora, mask]) => modelRun(lora, mask));
    await initBackend({ backend: 'wasm', native: false, quiet: true });
    expect(fusedKernelsActive()).toBe(false);
    const ops = cases.map(([lora, mask]) => modelRun(lora, mask));
    cases.forEach(([lora, mask], i) => {
      const what = `lora=${lora} padded=${!!mask}`;
      expect(Math.abs(fused[i].loss - ops[i].loss), what).toBeLessThanOrEqual(1e-4 * Math.abs(ops[i].loss));
      fused[i].grads.forEach((g, j) => close(g, ops[i].grads[j], 1e-4, `${what} grad ${j}`));
    });
  });

  it('a context holds an additive mask only for the compositions (the fused kernel masks itself)', async () => {
    const model = new LlamaModel(CFG, initLlamaWeights(CFG, new Rng(7)) as Map<string, tf.Tensor>);
    await initBackend({ backend: 'wasm', quiet: true });
    expect(model.context({ batch: 2, seq: 5 }).mask).toBeUndefined();
    tf.tidy(() => {
      expect(model.context({ batch: 2, seq: 5, attentionMask: [1, 1, 1, 0, 0, 1, 1, 1, 1, 1] }).mask).toBeUndefined();
    });
    await initBackend({ backend: 'wasm', native: false, quiet: true });
    expect(model.context({ batch: 2, seq: 5 }).mask?.shape).toEqual([1, 1, 5, 5]);
    model.dispose();
  });
});
