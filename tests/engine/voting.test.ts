// Exit voting rules and rule choice.
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { combineExits } from '../../packages/engine/src/infer/voting.js';
import { chooseRule, type EvalReport } from '../../packages/engine/src/infer/evaluate.js';

beforeAll(async () => { await initBackend({ quiet: true }); });

const P1 = [[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]];
const P2 = [[0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]];

describe('combineExits', () => {
  it('max: element-wise max over exits, renormalised (official code)', () => {
    const v = combineExits([tf.tensor2d(P1), tf.tensor2d(P2)], 'max').arraySync();
    const m0 = [0.7, 0.8, 0.1], z0 = 1.6;
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
      const w1 = Math.exp(-H(P1[r])), w2 = Math.exp(-H(P2[r]));
      v[r].forEach((x, i) => expect(x).toBeCloseTo((w1 * P1[r][i] + w2 * P2[r][i]) / (w1 + w2), 5));
    }
    // Row 1: exit 2 is uniform (max entropy), so the vote leans to exit 1 more than the mean does.
    expect(v[1][2]).toBeLessThan((P1[1][2] + P2[1][2]) / 2);
  });

  it('one exit is returned as is', () => {
    expect(combineExits([tf.tensor2d(P1)], 'max').arraySync()[0][0]).toBeCloseTo(0.7, 6);
  });
});

describe('chooseRule', () => {
  const rep = (acc: [number, number, number], loss: [number, number, number]) => ({
    examples: 10, tokens: 20, perExit: [], classTokens: [1, 2],
    voted: { max: { accuracy: acc[0], loss: loss[0], perplexity: 1 }, mean: { accuracy: acc[1], loss: loss[1], perplexity: 1 }, confidence: { accuracy: acc[2], loss: loss[2], perplexity: 1 } },
  }) as EvalReport;
  it('picks the best validation accuracy, breaking ties by loss', () => {
    expect(chooseRule(rep([0.8, 0.9, 0.85], [1, 1, 1]))).toBe('mean');
    expect(chooseRule(rep([0.9, 0.9, 0.9], [0.5, 0.4, 0.6]))).toBe('mean');
    expect(chooseRule(rep([0.9, 0.8, 0.95], [0.5, 0.4, 0.6]))).toBe('confidence');
  });
});
