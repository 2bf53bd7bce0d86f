// LUC building blocks: Cholesky, quantization, Wanda and SparseGPT pruning, per-layer policies.
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { cholesky, choleskyInverse, choleskyUpper, NotPositiveDefiniteError } from '../../packages/engine/src/compress/linalg.js';
import { quantizeWeight, dequantizeWeight, packedBytes, fakeQuantActivations } from '../../packages/engine/src/compress/quantize.js';
import { wandaMask, sparseGpt, HessianAccumulator, sparsityOf, applyMask } from '../../packages/engine/src/compress/prune.js';
import {
  inverseSensitivitySparsity,
  owlSparsity,
  meanRuleBits,
  budgetedBits,
  allocateWithBounds,
  PolicyError,
} from '../../packages/engine/src/compress/policy.js';
import { Rng } from '../../packages/engine/src/util/rng.js';

const rng = new Rng(5);
const randn = (n: number) =>
  Float32Array.from({ length: n }, () => {
    const u = Math.max(rng.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  });
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

beforeAll(async () => {
  await initBackend({ quiet: true });
});

describe('Cholesky', () => {
  it('factors, inverts and gives the upper factor of an SPD matrix', () => {
    const n = 7,
      m = randn(n * n),
      a = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = i === j ? 0.5 : 0;
        for (let k = 0; k < n; k++) s += m[i * n + k] * m[j * n + k];
        a[i * n + j] = s;
      }
    const L = cholesky(a, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += L[i * n + k] * L[j * n + k];
        expect(s).toBeCloseTo(a[i * n + j], 9);
      }
    const inv = choleskyInverse(L, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += a[i * n + k] * inv[k * n + j];
        expect(s).toBeCloseTo(i === j ? 1 : 0, 8);
      }
    const U = choleskyUpper(a, n);
    for (let i = 1; i < n; i++) expect(U[i * n + 0]).toBe(0);
    expect(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2)).toThrow(NotPositiveDefiniteError);
  });
});

describe('quantization', () => {
  it('packs 8- and 4-bit per channel and per group with error at most half a step, zeros kept', () => {
    const rows = 6,
      cols = 40,
      w = randn(rows * cols);
    w[3] = 0;
    w[77] = 0;
    for (const [bits, group] of [
      [8, 0],
      [4, 0],
      [4, 8],
      [2, 16],
    ] as const) {
      const p = quantizeWeight(w, rows, cols, bits, group);
      const d = dequantizeWeight(p);
      const g = group || cols;
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < cols; c++) {
          const s = p.scales[r * Math.ceil(cols / g) + Math.floor(c / g)];
          expect(Math.abs(d[r * cols + c] - w[r * cols + c])).toBeLessThanOrEqual(s / 2 + 1e-6);
        }
      expect(d[3]).toBe(0);
      expect(d[77]).toBe(0);
    }
    const b8 = packedBytes(quantizeWeight(w, rows, cols, 8)),
      b4 = packedBytes(quantizeWeight(w, rows, cols, 4));
    expect(b8).toBe(rows * cols + rows * 4);
    expect(b4).toBe((rows * cols) / 2 + rows * 4);
    expect(b4).toBeLessThan(w.byteLength / 6);
    // Per-group scales fit better than one scale per row.
    const err = (p: ReturnType<typeof quantizeWeight>) => {
      const d = dequantizeWeight(p);
      let e = 0;
      for (let i = 0; i < d.length; i++) e += (d[i] - w[i]) ** 2;
      return e;
    };
    expect(err(quantizeWeight(w, rows, cols, 4, 8))).toBeLessThan(err(quantizeWeight(w, rows, cols, 4, 0)));
  });

  it('fake-quantizes activations per token with a straight-through gradient', () => {
    const x = tf.tensor2d([
      [0.1, -0.52, 1.0],
      [2, 0.3, -0.01],
    ]);
    const y = fakeQuantActivations(x, 4).arraySync();
    expect(y[0][2]).toBeCloseTo(1.0, 6);
    expect(y[0][1]).toBeCloseTo(-4 / 7, 6); // -0.52 -> round(-3.64) = -4 steps of 1/7
    const g = tf.grad((t: tf.Tensor) =>
      tf.sum(
        tf.mul(
          fakeQuantActivations(t as tf.Tensor2D, 4),
          tf.tensor2d([
            [1, 2, 3],
            [4, 5, 6],
          ]),
        ),
      ),
    )(x);
    expect(g.arraySync()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
  });
});

describe('pruning', () => {
  const rows = 16,
    cols = 48,
    tokens = 256;
  const w = randn(rows * cols);
  // Correlated inputs with uneven feature scales, so activation-aware pruning matters.
  const base = randn(tokens * 8),
    mix = randn(8 * cols),
    x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++)
    for (let c = 0; c < cols; c++) {
      let s = 0;
      for (let k = 0; k < 8; k++) s += base[t * 8 + k] * mix[k * cols + c];
      x[t * cols + c] = s * (c % 5 === 0 ? 4 : 0.5) + 0.05 * randn(1)[0];
    }
  const xNorm = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let t = 0; t < tokens; t++) s += x[t * cols + c] ** 2;
    xNorm[c] = Math.sqrt(s);
  }
  const outErr = (wq: Float32Array) => {
    let e = 0;
    for (let t = 0; t < tokens; t++)
      for (let r = 0; r < rows; r++) {
        let a = 0,
          b = 0;
        for (let c = 0; c < cols; c++) {
          a += x[t * cols + c] * w[r * cols + c];
          b += x[t * cols + c] * wq[r * cols + c];
        }
        e += (a - b) ** 2;
      }
    return e;
  };

  it('Wanda prunes exactly the requested share of each row, by |W| x ||X||', () => {
    const mask = wandaMask(w, rows, cols, xNorm, 0.5);
    for (let r = 0; r < rows; r++) expect(mask.subarray(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0)).toBe(cols / 2);
    const magnitude = wandaMask(w, rows, cols, new Float64Array(cols).fill(1), 0.5);
    expect(outErr(applyMask(Float32Array.from(w), mask))).toBeLessThan(outErr(applyMask(Float32Array.from(w), magnitude)));
  });

  it('SparseGPT hits the sparsity and reconstructs the output better than Wanda', () => {
    const H = new HessianAccumulator(cols);
    H.add(x.subarray(0, 100 * cols), 100);
    H.add(x.subarray(100 * cols), tokens - 100);
    expect(H.tokens).toBe(tokens);
    const { weight, mask } = sparseGpt(w, rows, cols, H.H, 0.5, { blockSize: 16 });
    expect(sparsityOf(weight)).toBeCloseTo(0.5, 2);
    expect(mask.reduce((a, b) => a + b, 0)).toBe((rows * cols) / 2);
    const wanda = applyMask(Float32Array.from(w), wandaMask(w, rows, cols, xNorm, 0.5));
    expect(outErr(weight)).toBeLessThan(outErr(wanda));
  });
});

describe('LUC policy', () => {
  const sens = [0.001, 0.002, 0.004, 0.01, 0.02, 0.05, 0.2, 0.9];
  it('inverse-sensitivity sparsity keeps the budget, stays in range and orders layers', () => {
    const r = inverseSensitivitySparsity(sens, 0.5, { maxSparsity: 0.55 });
    expect(mean(r)).toBeCloseTo(0.5, 9);
    r.forEach((x) => {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(0.55 + 1e-12);
    });
    for (let i = 1; i < r.length; i++) expect(r[i]).toBeLessThanOrEqual(r[i - 1] + 1e-12);
    // Without clipping the paper's rule would give the least sensitive layers more than 0.55.
    const u = sens.map((s) => 1 - (s - 0.001) / (0.9 - 0.001));
    expect((u[0] / u.reduce((a, b) => a + b, 0)) * 8 * 0.5).toBeGreaterThan(0.55);
    expect(r[0]).toBeCloseTo(0.55, 9);
    expect(() => allocateWithBounds([1, 1], 0.9, 0, 0.5)).toThrow(PolicyError);
  });

  it('OWL-style sparsity stays within target +- lambda around the same mean', () => {
    const r = owlSparsity(sens, 0.5, 0.08);
    expect(mean(r)).toBeCloseTo(0.5, 6);
    r.forEach((x) => {
      expect(x).toBeGreaterThanOrEqual(0.42 - 1e-9);
      expect(x).toBeLessThanOrEqual(0.58 + 1e-9);
    });
    expect(r[7]).toBeLessThan(r[0]);
  });

  it('bits: the paper rule and the budgeted allocator', () => {
    expect(meanRuleBits([1, 2, 3, 10])).toEqual([4, 4, 4, 8]);
    const errors = [
      [0.5, 0.1, 0.01],
      [0.02, 0.01, 0.001],
      [5, 1, 0.1],
      [0.1, 0.05, 0.01],
    ];
    const bits = budgetedBits(errors, [2, 4, 8], 4);
    expect(mean(bits)).toBeLessThanOrEqual(4);
    expect(bits[2]).toBe(8); // the most sensitive layer gets the most bits
    expect(bits[1]).toBe(2);
    expect(() => budgetedBits(errors, [4, 8], 3)).toThrow(PolicyError);
  });
});
