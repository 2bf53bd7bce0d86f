// Exit voting rules and rule choice.
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { combineExits, fitExitWeights, pathWeights } from '../../packages/engine/src/infer/voting.js';
import { chooseRule, type EvalReport } from '../../packages/engine/src/infer/evaluate.js';

beforeAll(async () => {
  await initBackend({ quiet: true });
});

const P1 = [
  [0.7, 0.2, 0.1],
  [0.4, 0.4, 0.2],
];
const P2 = [
  [0.1, 0.8, 0.1],
  [1 / 3, 1 / 3, 1 / 3],
];

describe('combineExits', () => {
  it('max: element-wise max over exits, renormalised (official code)', () => {
    const v = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'max').arraySync();
    const m0 = [0.7, 0.8, 0.1],
      z0 = 1.6;
    v[0].forEach((x, i) => expect(x).toBeCloseTo(m0[i] / z0, 6));
    expect(v[1].reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  it('mean: average of the distributions', () => {
    const v = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'mean').arraySync();
    v[0].forEach((x, i) => expect(x).toBeCloseTo((P1[0][i] + P2[0][i]) / 2, 6));
  });

  it('confidence: lower-entropy exits weigh more, per row', () => {
    const v = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'confidence').arraySync();
    const H = (p: number[]) => -p.reduce((a, x) => a + x * Math.log(x), 0);
    for (const r of [0, 1]) {
      const w1 = Math.exp(-H(P1[r])),
        w2 = Math.exp(-H(P2[r]));
      v[r].forEach((x, i) => expect(x).toBeCloseTo((w1 * P1[r][i] + w2 * P2[r][i]) / (w1 + w2), 5));
    }
    // Row 1: exit 2 is uniform (max entropy), so the vote leans to exit 1 more than the mean does.
    expect(v[1][2]).toBeLessThan((P1[1][2] + P2[1][2]) / 2);
  });

  it('weighted: the mixture sum_k w_k P_k; without weights it is the mean; weights must match the exits', () => {
    const v = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'weighted', [0.75, 0.25]).arraySync();
    for (const r of [0, 1]) v[r].forEach((x, i) => expect(x).toBeCloseTo(0.75 * P1[r][i] + 0.25 * P2[r][i], 6));
    const u = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'weighted').arraySync();
    u[0].forEach((x, i) => expect(x).toBeCloseTo((P1[0][i] + P2[0][i]) / 2, 6));
    expect(() => combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'weighted', [1])).toThrow(/weights/);
  });

  it('one exit is returned as is', () => {
    expect(combineExits([tf.tensor2d(P1)], 'max').arraySync()[0][0]).toBeCloseTo(0.7, 6);
  });
});

describe('fitExitWeights', () => {
  it('puts the weight on the exit that predicts the targets (EM on the mixture likelihood)', () => {
    // exit 0 gives the right target 0.9, exit 1 gives it 0.2: the likelihood is maximised at w = [1, 0]
    const w = fitExitWeights(Array.from({ length: 50 }, () => [0.9, 0.2]));
    expect(w[0]).toBeGreaterThan(0.99);
    expect(w[0] + w[1]).toBeCloseTo(1, 9);
  });

  it('mixes exits that are right on different examples', () => {
    // each exit is confident and right on half the data and wrong on the other half: w = [0.5, 0.5]
    const p = [...Array.from({ length: 20 }, () => [0.99, 0.01]), ...Array.from({ length: 20 }, () => [0.01, 0.99])];
    const w = fitExitWeights(p);
    expect(w[0]).toBeCloseTo(0.5, 3);
    // the fitted weights beat uniform-but-skewed alternatives on the objective
    const ll = (v: number[]) => p.reduce((a, r) => a + Math.log(v[0] * r[0] + v[1] * r[1]), 0);
    expect(ll(w)).toBeGreaterThanOrEqual(ll([0.7, 0.3]));
    expect(fitExitWeights([])).toEqual([]);
  });

  it('pathWeights: only when every path has one', () => {
    const base = { layer: 0, start: 0, norm: tf.ones([2]) as tf.Tensor1D, head: tf.ones([3, 2]) as tf.Tensor2D };
    expect(
      pathWeights([
        { ...base, weight: 0.3 },
        { ...base, weight: 0.7 },
      ]),
    ).toEqual([0.3, 0.7]);
    expect(pathWeights([{ ...base, weight: 0.3 }, base])).toBeUndefined();
  });
});

describe('chooseRule', () => {
  const rep = (acc: [number, number, number, number], loss: [number, number, number, number]) =>
    ({
      examples: 10,
      tokens: 20,
      perExit: [],
      classTokens: [1, 2],
      exitWeights: [],
      voted: Object.fromEntries(
        (['max', 'mean', 'confidence', 'weighted'] as const).map((r, i) => [r, { accuracy: acc[i], loss: loss[i], perplexity: 1 }]),
      ),
    }) as unknown as EvalReport;
  it('picks the best validation accuracy, breaking ties by loss, earlier rules first', () => {
    expect(chooseRule(rep([0.8, 0.9, 0.85, 0.9], [1, 1, 1, 1]))).toBe('mean');
    expect(chooseRule(rep([0.9, 0.9, 0.9, 0.9], [0.5, 0.4, 0.6, 0.45]))).toBe('mean');
    expect(chooseRule(rep([0.9, 0.8, 0.95, 0.9], [0.5, 0.4, 0.6, 0.3]))).toBe('confidence');
    expect(chooseRule(rep([0.9, 0.8, 0.95, 0.96], [0.5, 0.4, 0.6, 0.6]))).toBe('weighted');
  });
});
