// Eager backprop (packages/engine/src/backend/backprop.ts): gradients bit-identical to the stock
// tfjs-core Engine.gradients, no tensor leaks, a lower peak during a LoRA backward pass, and
// higher-order gradients still working.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { backendInfo, initBackend } from '../../packages/engine/src/backend/index.js';
import { eagerBackpropInstalled, installEagerBackprop, uninstallEagerBackprop } from '../../packages/engine/src/backend/backprop.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { initLlamaWeights } from '../../packages/engine/src/model/init.js';
import { attachLora } from '../../packages/engine/src/model/lora.js';
import type { LlamaConfig } from '../../packages/core/src/hf-config.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { rng } from './helpers.js';

const rand = (shape: number[], seed: number, scale = 1) => {
  const r = rng(seed),
    n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => r() * scale),
    shape,
    'float32',
  );
};

interface Run {
  values: Float32Array[];
  liveTensors: number;
  liveBytes: number;
}

/**
 * Runs `f` (which computes gradients and returns the tensors to read: value and grads) with the
 * stock method and with the eager one. Records the values and how many tensors/bytes the call left
 * alive (its results), then checks everything but pre-existing tensors is freed after disposal.
 */
function stockVsEager(f: () => tf.Tensor[]): { stock: Run; eager: Run } {
  const run = (eager: boolean): Run => {
    if (eager) installEagerBackprop();
    else uninstallEagerBackprop();
    expect(eagerBackpropInstalled()).toBe(eager);
    const before = tf.memory();
    const out = f();
    const after = tf.memory();
    const values = out.map((t) => t.dataSync().slice() as Float32Array);
    tf.dispose(out);
    expect(tf.memory().numTensors, 'tensors left after disposing the results').toBe(before.numTensors);
    return { values, liveTensors: after.numTensors - before.numTensors, liveBytes: after.numBytes - before.numBytes };
  };
  const stock = run(false);
  const eager = run(true);
  return { stock, eager };
}

/** Same values to the bit, same tensors left alive. */
function expectIdentical({ stock, eager }: { stock: Run; eager: Run }): void {
  expect(eager.values.length).toBe(stock.values.length);
  stock.values.forEach((s, i) => {
    const e = eager.values[i];
    expect(e.length, `output ${i} length`).toBe(s.length);
    expect(
      Buffer.from(e.buffer, e.byteOffset, e.byteLength).equals(Buffer.from(s.buffer, s.byteOffset, s.byteLength)),
      `output ${i} differs: ${Array.from(e.slice(0, 4))} vs ${Array.from(s.slice(0, 4))}`,
    ).toBe(true);
  });
  expect(eager.liveTensors).toBe(stock.liveTensors);
  expect(eager.liveBytes).toBe(stock.liveBytes);
}

const CFG: LlamaConfig = {
  vocabSize: 50,
  hiddenSize: 24,
  intermediateSize: 40,
  numHiddenLayers: 4,
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

/** A tiny LLaMA with LoRA on every linear (B random, so every factor gets a gradient). */
function loraModel(cfg: LlamaConfig) {
  const vars = initLlamaWeights(cfg, new Rng(7));
  const model = new LlamaModel(cfg, vars as Map<string, tf.Tensor>);
  const lins = attachLora(
    model,
    { r: 3, alpha: 6, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    new Rng(8),
  );
  for (const l of lins) l.lora!.B.assign(rand(l.lora!.B.shape, l.lora!.B.size, 0.2));
  const trainable = lins.flatMap((l) => [l.lora!.A, l.lora!.B]);
  const dispose = () => {
    model.dispose();
    tf.dispose([...vars.values(), ...trainable]);
  };
  return { model, trainable, dispose };
}

describe('eager backprop', () => {
  const envBefore = process.env.EDGETUNE_EAGER_BACKPROP;
  beforeAll(async () => {
    delete process.env.EDGETUNE_EAGER_BACKPROP; // the default
    await initBackend({ quiet: true });
  });
  afterAll(() => {
    installEagerBackprop(); // as initBackend left it
    if (envBefore !== undefined) process.env.EDGETUNE_EAGER_BACKPROP = envBefore;
  });

  it('is installed by initBackend (EDGETUNE_EAGER_BACKPROP=0: not) and idempotent', async () => {
    expect(eagerBackpropInstalled()).toBe(true);
    expect(backendInfo()?.eagerBackprop).toBe(true);
    process.env.EDGETUNE_EAGER_BACKPROP = '0';
    try {
      expect((await initBackend({ quiet: true })).eagerBackprop).toBe(false);
      expect(eagerBackpropInstalled()).toBe(false);
    } finally {
      delete process.env.EDGETUNE_EAGER_BACKPROP;
    }
    expect((await initBackend({ quiet: true })).eagerBackprop).toBe(true);
    expect(eagerBackpropInstalled()).toBe(true);
    const patched = tf.engine().gradients;
    installEagerBackprop();
    expect(tf.engine().gradients).toBe(patched);
    uninstallEagerBackprop();
    expect(eagerBackpropInstalled()).toBe(false);
    uninstallEagerBackprop();
    installEagerBackprop();
    expect(tf.engine().gradients).toBe(patched);
  });

  it('MLP with matMul, relu and broadcasting adds: identical gradients, no leaks', () => {
    const x = rand([4, 5], 1),
      w1 = rand([5, 6], 2),
      b1 = rand([6], 3),
      w2 = rand([6, 3], 4),
      b2 = rand([3], 5);
    const f = (xx: tf.Tensor, a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) =>
      tf.sum(tf.square(tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(xx, a), b)), c), d))) as tf.Scalar;
    expectIdentical(
      stockVsEager(() => {
        const { value, grads } = tf.valueAndGrads(f)([x, w1, b1, w2, b2]);
        return [value, ...grads];
      }),
    );
    // A caller-provided dy survives and is used.
    const dy = rand([4, 3], 6);
    expectIdentical(stockVsEager(() => tf.grads((a: tf.Tensor) => tf.add(tf.matMul(tf.relu(tf.matMul(x, a)), w2), b2))([w1], dy)));
    expect(dy.isDisposed).toBe(false);
    tf.dispose([x, w1, b1, w2, b2, dy]);
  });

  it('a tensor with several consumers (gradient accumulation)', () => {
    const a = rand([3, 4], 7);
    const f = (t: tf.Tensor) => {
      const h = tf.mul(t, 2);
      const u = tf.add(tf.mul(h, h), tf.sin(h)); // h feeds three ops
      return tf.add(tf.sum(tf.mul(u, tf.exp(t))), tf.sum(tf.matMul(u, h, false, true))) as tf.Scalar; // t, u twice
    };
    expectIdentical(
      stockVsEager(() => {
        const { value, grad } = tf.valueAndGrad(f)(a);
        return [value, grad];
      }),
    );
    a.dispose();
  });

  it('gradients that return dy itself (customGrad passing dy through, identity/reshape chains)', () => {
    const x = rand([2, 6], 8);
    // dy returned unchanged for both inputs: the same tensor lands in two map entries, is consumed
    // by two nodes and accumulated.
    const passThrough = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
      save([a]);
      return { value: tf.add(a, b), gradFunc: (dy: tf.Tensor) => [dy, dy] };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const f = (t: tf.Tensor) => {
      const a = tf.mul(t, 2),
        b = tf.reshape(tf.clone(tf.reshape(tf.mul(t, 3), [3, 4])), [2, 6]);
      const c = passThrough(a, b);
      return tf.sum(tf.mul(tf.clone(tf.reshape(c, [12])), tf.reshape(t, [12]))) as tf.Scalar;
    };
    expectIdentical(
      stockVsEager(() => {
        const { value, grad } = tf.valueAndGrad(f)(x);
        return [value, grad];
      }),
    );
    // Identity (tf.clone) / reshape chains only, with a caller dy flowing straight through.
    const dy = rand([12], 9);
    expectIdentical(stockVsEager(() => [tf.grad((t: tf.Tensor) => tf.reshape(tf.clone(tf.reshape(tf.clone(t), [3, 4])), [12]))(x, dy)]));
    expect(dy.isDisposed).toBe(false);
    tf.dispose([x, dy]);
  });

  it('custom gradients returning tensors the backward pass does not own (a saved tensor, an outside tensor)', () => {
    const x = rand([2, 3], 15),
      k = rand([2, 3], 16);
    const cg = (grad: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor) =>
      tf.customGrad(((a: tf.Tensor, save: tf.GradSaveFunc) => {
        save([a]);
        return { value: tf.square(a), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [grad(dy, saved)] };
      }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const returnsSaved = cg((_dy, saved) => saved[0]); // the saved clone itself becomes a dy upstream
    const returnsOutside = cg(() => k); // a tensor created outside gradients()
    for (const op of [returnsSaved, returnsOutside]) {
      expectIdentical(
        stockVsEager(() => {
          const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.sin(op(tf.mul(t, 2)))) as tf.Scalar)(x);
          return [value, grad];
        }),
      );
    }
    expect(k.isDisposed).toBe(false);
    tf.dispose([x, k]);
  });

  it('tf.variableGrads with variables (one unused) and tf.customGrad', () => {
    const v1 = tf.variable(rand([3, 3], 10), true, 'bp_v1'),
      v2 = tf.variable(rand([3], 11), true, 'bp_v2');
    const unused = tf.variable(rand([2], 12), true, 'bp_unused');
    const inp = rand([5, 3], 13);
    // customGrad computing its own gradient from saved tensors.
    const cube = tf.customGrad(((t: tf.Tensor, save: tf.GradSaveFunc) => {
      save([t]);
      return { value: tf.pow(t, 3), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, tf.mul(3, tf.square(saved[0])))] };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const run = () => {
      const { value, grads } = tf.variableGrads(
        () => tf.mean(cube(tf.tanh(tf.add(tf.matMul(inp, v1), v2)))) as tf.Scalar,
        [v1, v2, unused],
      );
      expect(Object.keys(grads).sort()).toEqual(['bp_v1', 'bp_v2']);
      return [value, grads.bp_v1, grads.bp_v2];
    };
    expectIdentical(stockVsEager(run));
    tf.dispose([v1, v2, unused, inp]);
  });

  it('same errors as stock', () => {
    const x = tf.scalar(2);
    for (const eager of [false, true]) {
      if (eager) installEagerBackprop();
      else uninstallEagerBackprop();
      expect(() => tf.grad(() => tf.scalar(1))(x)).toThrow(/Cannot compute gradient of y=f\(x\) with respect to x/);
      expect(() => tf.grads((t: tf.Tensor) => tf.mul(t, 2))([x], tf.scalar(1, 'int32'))).toThrow(/dy must have 'float32' dtype/);
    }
    installEagerBackprop();
    x.dispose();
  });

  it('LoRA gradients of a tiny LLaMA: identical to stock, no leaks', () => {
    const { model, trainable, dispose } = loraModel({ ...CFG, numHiddenLayers: 2 });
    const B = 2,
      T = 7,
      r = new Rng(9);
    const ids = tf.tensor1d(
      Int32Array.from({ length: B * T }, () => r.int(CFG.vocabSize)),
      'int32',
    );
    const R = rand([B * T, CFG.hiddenSize], 10);
    const ctx = model.context({ batch: B, seq: T, attentionMask: [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0] });
    expectIdentical(
      stockVsEager(() => {
        const { value, grads } = tf.variableGrads(() => {
          let h = model.embed(ids);
          for (let l = 0; l < 2; l++) h = model.layer(l, h, ctx, true);
          return tf.sum(tf.mul(model.rmsNorm(h, model.finalNorm), R)) as tf.Scalar;
        }, trainable);
        expect(Object.keys(grads).length).toBe(trainable.length);
        return [value, ...trainable.map((v) => grads[v.name])];
      }),
    );
    tf.dispose([ids, R]);
    dispose();
  });

  it('lowers the peak of a LoRA backward pass through several layers', async () => {
    const cfg = { ...CFG, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 4, headDim: 8 };
    const { model, trainable, dispose } = loraModel(cfg);
    const B = 2,
      T = 32,
      r = new Rng(11);
    const ids = tf.tensor1d(
      Int32Array.from({ length: B * T }, () => r.int(cfg.vocabSize)),
      'int32',
    );
    const labels = tf.tensor1d(
      Int32Array.from({ length: B * T }, () => r.int(cfg.vocabSize)),
      'int32',
    );
    const ctx = model.context({ batch: B, seq: T });
    // Each layer in its own tidy (the tape keeps what backward needs): the forward pass then never
    // holds more than one layer's temporaries, and the peak is set by the backward pass.
    const peak = async (eager: boolean) => {
      if (eager) installEagerBackprop();
      else uninstallEagerBackprop();
      const base = tf.memory().numBytes;
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => {
          let h = model.embed(ids);
          for (let l = 0; l < cfg.numHiddenLayers; l++) {
            const x = h;
            h = tf.tidy(() => model.layer(l, x, ctx, true));
          }
          const logits = tf.matMul(model.rmsNorm(h, model.finalNorm), model.lmHead, false, true);
          return tf.losses.softmaxCrossEntropy(tf.oneHot(labels, cfg.vocabSize), logits) as tf.Scalar;
        }, trainable);
        tf.dispose([value, ...Object.values(grads)]);
      });
      return info.peakBytes - base;
    };
    const stock = await peak(false),
      eager = await peak(true);
    console.log(
      `LoRA backward peak above baseline: stock ${(stock / 1024).toFixed(1)} KiB, eager ${(eager / 1024).toFixed(1)} KiB (${(100 * (1 - eager / stock)).toFixed(1)}% lower)`,
    );
    expect(eager).toBeLessThan(0.8 * stock);
    tf.dispose([ids, labels]);
    dispose();
  });

  it('higher-order gradients still work (tf.grad(tf.grad(f)))', () => {
    const x = tf.tensor1d([0.5, -1.5, 2]);
    // f(x) = x^3 * sin(x): f'' = 6x sin x + 6x^2 cos x - x^3 sin x
    const f = (t: tf.Tensor) => tf.mul(tf.pow(t, 3), tf.sin(t));
    const res = stockVsEager(() => [tf.grad(tf.grad(f))(x), tf.grad(tf.grad(tf.grad(f)))(x)]);
    expectIdentical(res);
    const want = [0.5, -1.5, 2].map((v) => 6 * v * Math.sin(v) + 6 * v * v * Math.cos(v) - v ** 3 * Math.sin(v));
    res.eager.values[0].forEach((g, i) => expect(g).toBeCloseTo(want[i], 4));
    // Gradient of a function of a gradient, through a matMul. (Not through ops that save their
    // output, e.g. tanh: stock TF.js records the output's clone before the op on the tape, so the
    // outer pass cannot see it; that fails with the stock method too.)
    const w = rand([3, 3], 14),
      x2 = tf.reshape(x, [1, 3]);
    expectIdentical(
      stockVsEager(() => [tf.grad((a: tf.Tensor) => tf.sum(tf.square(tf.grad((b: tf.Tensor) => tf.sum(tf.sin(tf.matMul(b, w))))(a))))(x2)]),
    );
    tf.dispose([x, w, x2]);
  });
});
