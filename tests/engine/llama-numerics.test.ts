// Numerics of the LLaMA-family decoder and PEFT LoRA against PyTorch references (HF modeling code of each
// family: GQA, Llama 3 rope scaling, Qwen2 attention biases), linear rope scaling, Mistral's sliding window,
// the configs refused, and config.json round trips.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaModel, causalLmLoss } from '../../packages/engine/src/model/llama.js';
import { applyPeftAdapter, peftName } from '../../packages/engine/src/model/lora.js';
import { initLlamaWeights, saveModelFolder } from '../../packages/engine/src/model/init.js';
import { ropeInvFreq } from '../../packages/engine/src/model/rope.js';
import { ModelConfigError, parseLlamaConfig, toHfConfig, type LlamaConfig } from '../../packages/core/src/hf-config.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { REPO_ROOT, useTestBackend, maxAbsDiff, maxAbs, rng } from './helpers.js';

interface Reference {
  input_ids: number[][];
  logits: number[][][];
  hidden_states: number[][][][];
  loss: number;
  lora_logits: number[][][];
  lora_loss: number;
  lora_grads: Record<string, number[][]>;
}

const within = (got: ArrayLike<number>, want: unknown) => {
  const w = Float32Array.from((want as number[]).flat(3) as number[]);
  return { err: maxAbsDiff(got, w), tol: 1e-4 * maxAbs(w) };
};

beforeAll(async () => {
  await useTestBackend();
});

const FIXTURES = [
  // GQA path exercised: fewer key/value heads than query heads
  { name: 'llama-tiny-gqa', check: (c: LlamaConfig) => expect(c.numKeyValueHeads).toBeLessThan(c.numAttentionHeads) },
  { name: 'llama3-rope-scaled', check: (c: LlamaConfig) => expect(c.ropeScaling?.ropeType).toBe('llama3') },
  {
    name: 'qwen2-bias',
    check: (c: LlamaConfig) => {
      expect(c.modelType).toBe('qwen2');
      expect(c.slidingWindow).toBeNull(); // sliding_window 4096 is present but use_sliding_window is false
    },
  },
];

for (const { name, check } of FIXTURES) {
  const dir = join(REPO_ROOT, 'tests', 'fixtures', name);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;

  describe(`LlamaModel vs PyTorch reference (${name})`, () => {
    it('matches logits, every hidden state and the loss without the adapter', () => {
      const model = LlamaModel.load(dir);
      check(model.config);
      const { logits, hiddenStates } = model.forward(ref.input_ids, { hiddenStates: true });
      const l = within(logits.dataSync(), ref.logits);
      expect(l.err).toBeLessThanOrEqual(l.tol);
      expect(hiddenStates).toHaveLength(ref.hidden_states.length);
      hiddenStates.forEach((h, i) => {
        const r = within(h.dataSync(), ref.hidden_states[i]);
        expect(r.err, `hidden_states[${i}]`).toBeLessThanOrEqual(r.tol);
      });
      const loss = causalLmLoss(logits, ref.input_ids).dataSync()[0];
      expect(Math.abs(loss - ref.loss)).toBeLessThanOrEqual(1e-4 * Math.abs(ref.loss));
      tf.dispose([logits, ...hiddenStates]);
      model.dispose();
    });

    it('matches LoRA logits, loss and the gradient of every LoRA tensor with the PEFT adapter', () => {
      const model = LlamaModel.load(dir);
      const { loraModules } = applyPeftAdapter(model, join(dir, 'lora'));
      expect(loraModules.length).toBe(Object.keys(ref.lora_grads).length / 2);
      const { logits } = model.forward(ref.input_ids, { lora: true });
      const l = within(logits.dataSync(), ref.lora_logits);
      expect(l.err).toBeLessThanOrEqual(l.tol);
      logits.dispose();

      const lins = [...model.linears().values()].filter((x) => x.lora);
      const vars: tf.Variable[] = lins.flatMap((x) => [x.lora!.A, x.lora!.B]);
      const { value, grads } = tf.variableGrads(() => {
        const out = model.forward(ref.input_ids, { lora: true }).logits;
        return causalLmLoss(out, ref.input_ids);
      }, vars);
      expect(Math.abs(value.dataSync()[0] - ref.lora_loss)).toBeLessThanOrEqual(1e-4 * ref.lora_loss);
      let checked = 0;
      for (const lin of lins) {
        for (const which of ['lora_A', 'lora_B'] as const) {
          const pname = peftName(lin.name, which);
          const v = which === 'lora_A' ? lin.lora!.A : lin.lora!.B;
          const g = grads[v.name];
          expect(g, pname).toBeDefined();
          const r = within(g.dataSync(), ref.lora_grads[pname]);
          expect(r.err, pname).toBeLessThanOrEqual(r.tol);
          checked++;
        }
      }
      expect(checked).toBe(Object.keys(ref.lora_grads).length);
      tf.dispose([value, ...Object.values(grads)]);
      model.dispose();
    });
  });
}

describe('Qwen2 attention biases', () => {
  it('loads q/k/v biases and no o_proj bias', () => {
    const model = LlamaModel.load(join(REPO_ROOT, 'tests', 'fixtures', 'qwen2-bias'));
    for (const L of model.layers) {
      for (const n of ['q_proj', 'k_proj', 'v_proj'] as const) expect(L.linears[n].bias?.shape, n).toEqual([L.linears[n].weight.shape[0]]);
      for (const n of ['o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const) expect(L.linears[n].bias, n).toBeUndefined();
    }
    model.dispose();
  });
});

/** A tiny random config of `modelType` (hidden 16, 2 heads of 8 sharing 1 kv head). */
function tinyConfig(o: Partial<LlamaConfig> = {}): LlamaConfig {
  return parseLlamaConfig(
    toHfConfig({
      vocabSize: 40,
      hiddenSize: 16,
      intermediateSize: 24,
      numHiddenLayers: 1,
      numAttentionHeads: 2,
      numKeyValueHeads: 1,
      headDim: 8,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 64,
      attentionBias: false,
      mlpBias: false,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: null,
      hiddenAct: 'silu',
      ...o,
    }),
  );
}

/** A model of config `c` with random weights and non-zero biases. */
function randomModel(c: LlamaConfig, seed = 5): LlamaModel {
  const w = initLlamaWeights(c, new Rng(seed));
  const r = rng(seed + 1);
  for (const [n, v] of w) if (n.endsWith('.bias')) v.assign(tf.tensor1d(Float32Array.from({ length: v.size }, () => 0.1 * r())));
  return new LlamaModel(c, w as Map<string, tf.Tensor>);
}

describe('rope_scaling', () => {
  const base = tinyConfig();
  const plain = ropeInvFreq(base);

  it('linear divides every inverse frequency by factor', () => {
    const inv = ropeInvFreq(tinyConfig({ ropeScaling: { ropeType: 'linear', factor: 2 } }));
    expect(inv).toHaveLength(base.headDim / 2);
    plain.forEach((f, i) => expect(inv[i]).toBe(Math.fround(f / 2)));
  });

  it('linear factor 2 puts position 2p where plain RoPE puts p', () => {
    const a = randomModel(base),
      b = randomModel(tinyConfig({ ropeScaling: { ropeType: 'linear', factor: 2 } }));
    const T = 6,
      d = base.headDim;
    const p = a.ropeTables(T),
      s = b.ropeTables(2 * T);
    const [pc, ps, sc, ss] = [p.cos, p.sin, s.cos, s.sin].map((t) => t.dataSync());
    for (let t = 0; t < T; t++) {
      expect(sc.subarray(2 * t * d, 2 * t * d + d)).toEqual(pc.subarray(t * d, t * d + d));
      expect(ss.subarray(2 * t * d, 2 * t * d + d)).toEqual(ps.subarray(t * d, t * d + d));
    }
    a.dispose();
    b.dispose();
  });

  it('llama3 keeps high frequencies, divides low ones and smooths the band between', () => {
    const s = { ropeType: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
    const inv = ropeInvFreq(tinyConfig({ headDim: 16, numAttentionHeads: 1, ropeScaling: s }));
    const raw = ropeInvFreq(tinyConfig({ headDim: 16, numAttentionHeads: 1 }));
    const kinds = new Set<string>();
    raw.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      let want = f;
      if (wavelen > 64) want = f / 8;
      else if (wavelen >= 16) {
        const smooth = (64 / wavelen - 1) / (4 - 1);
        want = (1 - smooth) * (f / 8) + smooth * f;
      }
      kinds.add(wavelen > 64 ? 'low' : wavelen < 16 ? 'high' : 'band');
      expect(inv[i]).toBe(Math.fround(want));
    });
    expect([...kinds].sort()).toEqual(['band', 'high', 'low']);
  });

  it('without rope_scaling the frequencies are theta^(-2i/headDim) in float32', () => {
    plain.forEach((f, i) => expect(f).toBe(Math.fround(1 / 10000 ** ((2 * i) / base.headDim))));
  });
});

describe('config.json: refused variants', () => {
  const raw = toHfConfig(tinyConfig());
  const refuse = (extra: Record<string, unknown>) => () => parseLlamaConfig({ ...raw, ...extra });

  it('names an unsupported rope type', () => {
    for (const type of ['yarn', 'dynamic', 'longrope']) {
      expect(refuse({ rope_scaling: { rope_type: type, factor: 2 } })).toThrow(ModelConfigError);
      expect(refuse({ rope_scaling: { rope_type: type, factor: 2 } })).toThrow(
        `config.json: rope_scaling.rope_type "${type}" is not supported (supported: linear, llama3)`,
      );
    }
    expect(refuse({ rope_scaling: { type: 'dynamic', factor: 2 } })).toThrow(/rope_scaling\.rope_type "dynamic"/);
  });

  it('names a missing or invalid scaling field', () => {
    expect(refuse({ rope_scaling: { rope_type: 'linear' } })).toThrow(/"rope_scaling\.factor" must be a number/);
    expect(refuse({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } })).toThrow(
      /rope_scaling\.original_max_position_embeddings/,
    );
    expect(refuse({ rope_scaling: { rope_type: 'linear', factor: 0 } })).toThrow(ModelConfigError);
  });

  it('refuses a model_type it does not implement, naming it; a config without one is llama', () => {
    expect(refuse({ model_type: 'qwen3' })).toThrow(/model_type "qwen3" is not supported \(supported: llama, mistral, qwen2\)/);
    const { model_type: _, ...untyped } = raw as Record<string, unknown>;
    expect(parseLlamaConfig(untyped).modelType).toBe('llama');
  });

  it('names use_sliding_window', () => {
    expect(refuse({ model_type: 'qwen2', use_sliding_window: true, sliding_window: 8 })).toThrow(ModelConfigError);
    expect(refuse({ model_type: 'qwen2', use_sliding_window: true, sliding_window: 8 })).toThrow(/use_sliding_window/);
    expect(parseLlamaConfig({ ...raw, model_type: 'qwen2', use_sliding_window: false, sliding_window: 8 }).slidingWindow).toBeNull();
  });

  it('reads legacy `type`, "default" and a null Mistral window', () => {
    expect(parseLlamaConfig({ ...raw, rope_scaling: { type: 'linear', factor: 4 } }).ropeScaling).toEqual({
      ropeType: 'linear',
      factor: 4,
    });
    expect(parseLlamaConfig({ ...raw, rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeNull();
    expect(parseLlamaConfig({ ...raw, model_type: 'mistral', sliding_window: null }).slidingWindow).toBeNull();
  });
});

describe('config.json round trip', () => {
  const variants: [string, Partial<LlamaConfig>][] = [
    ['llama, attention_bias + mlp_bias', { attentionBias: true, mlpBias: true }],
    [
      'llama3 rope_scaling',
      { ropeScaling: { ropeType: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } },
    ],
    ['linear rope_scaling', { ropeScaling: { ropeType: 'linear', factor: 2 } }],
    ['qwen2', { modelType: 'qwen2' }],
    ['mistral', { modelType: 'mistral', slidingWindow: 3 }],
  ];
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'edgetune-families-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, o] of variants) {
    it(`${name}: saveModelFolder writes a folder that loads to the same config and logits`, () => {
      const c = tinyConfig(o);
      expect(parseLlamaConfig(toHfConfig(c))).toEqual(c);
      const model = randomModel(c);
      const md = join(dir, name.replace(/\W+/g, '-'));
      saveModelFolder(md, c, model.namedWeights());
      const back = LlamaModel.load(md);
      expect(back.config).toEqual(c);
      expect([...back.namedWeights().keys()].sort()).toEqual([...model.namedWeights().keys()].sort());
      const ids = [[1, 5, 9, 3, 17, 30, 2, 8]];
      const a = model.forward(ids).logits,
        b = back.forward(ids).logits;
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
      tf.dispose([a, b]);
      model.dispose();
      back.dispose();
    });
  }

  it('llama attention_bias puts a bias on all four attention projections', () => {
    const model = randomModel(tinyConfig({ attentionBias: true }));
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const) expect(model.layers[0].linears[n].bias, n).toBeDefined();
    expect(model.layers[0].linears.up_proj.bias).toBeUndefined();
    model.dispose();
  });
});

describe('Mistral sliding window', () => {
  const W = 3,
    T = 10;
  const ids = [[4, 11, 7, 23, 5, 9, 31, 2, 14, 6]];
  const logitsOf = (m: LlamaModel, x: number[][]) => {
    const { logits } = m.forward(x);
    const out = logits.dataSync() as Float32Array;
    logits.dispose();
    return out;
  };
  const row = (a: Float32Array, t: number, V: number) => a.subarray(t * V, (t + 1) * V);

  it('a query at position i sees keys i - W < j <= i only (one layer)', () => {
    const c = tinyConfig({ modelType: 'mistral', slidingWindow: W });
    const m = randomModel(c);
    const V = c.vocabSize,
      i = T - 1;
    const base = logitsOf(m, ids);
    // Tokens at j <= i - W changed: position i does not move.
    const outside = [ids[0].map((x, j) => (j <= i - W ? (x + 13) % V : x))];
    expect(maxAbsDiff(row(logitsOf(m, outside), i, V), row(base, i, V))).toBeLessThanOrEqual(1e-6);
    // The oldest key inside the window changed: position i moves.
    const inside = [ids[0].map((x, j) => (j === i - W + 1 ? (x + 13) % V : x))];
    expect(maxAbsDiff(row(logitsOf(m, inside), i, V), row(base, i, V))).toBeGreaterThan(1e-3);
    m.dispose();
  });

  it('equals full attention over the last W tokens (RoPE is relative), at every position', () => {
    const c = tinyConfig({ modelType: 'mistral', slidingWindow: W });
    const m = randomModel(c),
      full = randomModel(tinyConfig({ modelType: 'mistral', slidingWindow: null }));
    const V = c.vocabSize;
    const got = logitsOf(m, ids);
    for (let i = 0; i < T; i++) {
      const lo = Math.max(0, i - W + 1);
      const want = logitsOf(full, [ids[0].slice(lo, i + 1)]);
      const w = row(want, i - lo, V);
      expect(maxAbsDiff(row(got, i, V), w), `position ${i}`).toBeLessThanOrEqual(1e-4 * maxAbs(w));
    }
    m.dispose();
    full.dispose();
  });

  it('a window at least the sequence length is plain causal attention, and padding still masks', () => {
    const windowed = randomModel(tinyConfig({ modelType: 'mistral', slidingWindow: T, numHiddenLayers: 2 }));
    const plain = randomModel(tinyConfig({ modelType: 'mistral', slidingWindow: null, numHiddenLayers: 2 }));
    expect(windowed.context({ batch: 1, seq: T }).windowed).toBeUndefined();
    expect(maxAbsDiff(logitsOf(windowed, ids), logitsOf(plain, ids))).toBe(0);
    windowed.dispose();
    plain.dispose();
    const m = randomModel(tinyConfig({ modelType: 'mistral', slidingWindow: W, numHiddenLayers: 2 }));
    const V = m.config.vocabSize;
    // Right padding: the real tokens' logits equal those of the unpadded sequence.
    const short = ids[0].slice(0, 7);
    const padded = m.forward([[...short, 0, 0, 0]], { attentionMask: [[1, 1, 1, 1, 1, 1, 1, 0, 0, 0]] }).logits;
    const want = logitsOf(m, [short]);
    const got = (padded.dataSync() as Float32Array).subarray(0, 7 * V);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-5 * maxAbs(want));
    padded.dispose();
    m.dispose();
  });

  it('LoRA gradients flow through the windowed attention', () => {
    const m = randomModel(tinyConfig({ modelType: 'mistral', slidingWindow: W }));
    const q = m.layers[0].linears.q_proj;
    q.lora = {
      A: tf.variable(tf.randomUniform([2, 16], -0.3, 0.3, 'float32', 1)),
      B: tf.variable(tf.randomUniform([16, 2], -0.3, 0.3, 'float32', 2)),
      scale: 2,
      dropout: 0,
    };
    const { value, grads } = tf.variableGrads(() => causalLmLoss(m.forward(ids, { lora: true }).logits, ids), [q.lora.A, q.lora.B]);
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    expect(maxAbs(grads[q.lora.A.name].dataSync())).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    m.dispose();
  });
});
