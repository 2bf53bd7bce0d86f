// Configs the PyTorch fixture does not cover (tied embeddings, plain multi-head attention, other
// rope_theta / rms_norm_eps, F16/BF16 weights, sharded safetensors) checked against an independent
// float64 JavaScript implementation of HF LlamaForCausalLM's forward pass, through the CLI too.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadLlamaConfig, type LlamaConfig } from '../../packages/core/src/hf-config.js';
import { readModelWeights, readSafetensors, writeSafetensors } from '../../packages/engine/src/io/safetensors.js';
import { createTinyModel } from '../helpers/tiny-model.js';
import { FIXTURE_DIR, REPO_ROOT, maxAbs, maxAbsDiff } from './helpers.js';

/** Reference forward in float64 loops, written from modeling_llama.py without sharing engine code. */
function referenceLogits(c: LlamaConfig, W: Map<string, Float64Array>, ids: number[]): Float64Array {
  const T = ids.length,
    d = c.hiddenSize,
    H = c.numAttentionHeads,
    KV = c.numKeyValueHeads,
    dh = c.headDim,
    F = c.intermediateSize,
    V = c.vocabSize;
  const w = (n: string) => {
    const x = W.get(n);
    if (!x) throw new Error(n);
    return x;
  };
  const lin = (x: Float64Array, rows: number, name: string, out: number, inn: number) => {
    const m = w(name),
      y = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++)
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let i = 0; i < inn; i++) s += x[r * inn + i] * m[o * inn + i];
        y[r * out + o] = s;
      }
    return y;
  };
  const norm = (x: Float64Array, g: Float64Array) => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < T; r++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += x[r * d + i] ** 2;
      const k = 1 / Math.sqrt(s / d + c.rmsNormEps);
      for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * k * g[i];
    }
    return y;
  };
  const rope = (x: Float64Array, heads: number) => {
    const y = new Float64Array(x.length),
      half = dh / 2;
    for (let t = 0; t < T; t++)
      for (let h = 0; h < heads; h++)
        for (let j = 0; j < dh; j++) {
          const i = j % half,
            a = t * c.ropeTheta ** (-(2 * i) / dh);
          const xj = x[t * heads * dh + h * dh + j],
            rot = j < half ? -x[t * heads * dh + h * dh + j + half] : x[t * heads * dh + h * dh + j - half];
          y[t * heads * dh + h * dh + j] = xj * Math.cos(a) + rot * Math.sin(a);
        }
    return y;
  };
  const emb = w('model.embed_tokens.weight');
  const h = new Float64Array(T * d);
  ids.forEach((id, t) => h.set(emb.subarray(id * d, id * d + d), t * d));
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = `model.layers.${l}`;
    const x = norm(h, w(`${p}.input_layernorm.weight`));
    const q = rope(lin(x, T, `${p}.self_attn.q_proj.weight`, H * dh, d), H);
    const k = rope(lin(x, T, `${p}.self_attn.k_proj.weight`, KV * dh, d), KV);
    const v = lin(x, T, `${p}.self_attn.v_proj.weight`, KV * dh, d);
    const att = new Float64Array(T * H * dh);
    for (let hh = 0; hh < H; hh++) {
      const g = Math.floor(hh / (H / KV));
      for (let t = 0; t < T; t++) {
        const sc: number[] = [];
        for (let s = 0; s <= t; s++) {
          let z = 0;
          for (let j = 0; j < dh; j++) z += q[t * H * dh + hh * dh + j] * k[s * KV * dh + g * dh + j];
          sc.push(z / Math.sqrt(dh));
        }
        const m = Math.max(...sc),
          e = sc.map((z) => Math.exp(z - m)),
          zs = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < dh; j++) {
          let s2 = 0;
          for (let s = 0; s <= t; s++) s2 += (e[s] / zs) * v[s * KV * dh + g * dh + j];
          att[t * H * dh + hh * dh + j] = s2;
        }
      }
    }
    const o = lin(att, T, `${p}.self_attn.o_proj.weight`, d, H * dh);
    for (let i = 0; i < h.length; i++) h[i] += o[i];
    const x2 = norm(h, w(`${p}.post_attention_layernorm.weight`));
    const gt = lin(x2, T, `${p}.mlp.gate_proj.weight`, F, d),
      up = lin(x2, T, `${p}.mlp.up_proj.weight`, F, d);
    const a = new Float64Array(T * F);
    for (let i = 0; i < a.length; i++) a[i] = (gt[i] / (1 + Math.exp(-gt[i]))) * up[i];
    const dn = lin(a, T, `${p}.mlp.down_proj.weight`, d, F);
    for (let i = 0; i < h.length; i++) h[i] += dn[i];
  }
  const hn = norm(h, w('model.norm.weight'));
  return lin(hn, T, c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', V, d);
}

function weights64(dir: string): Map<string, Float64Array> {
  const m = new Map<string, Float64Array>();
  for (const [n, t] of readModelWeights(dir)) m.set(n, Float64Array.from(t.data as Float32Array));
  return m;
}

let dir: string;
const IDS = [1, 17, 42, 99, 7, 250, 3, 64, 128, 5];

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-cfg-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LLaMA variants vs a float64 reference', () => {
  const variants = [
    {
      name: 'tied embeddings, plain multi-head, rope_theta 500000, eps 1e-6',
      o: { tied: true, kvHeads: 4, ropeTheta: 500000, rmsNormEps: 1e-6 },
    },
    { name: 'GQA 4:1, untied, F16 weights', o: { kvHeads: 1, dtype: 'F16' as const } },
    { name: 'BF16 weights, 3 layers, head_dim 16', o: { layers: 3, hiddenSize: 32, heads: 2, kvHeads: 2, dtype: 'BF16' as const } },
  ];
  for (const { name, o } of variants) {
    it(name, () => {
      const md = join(dir, name.replace(/\W+/g, '-'));
      createTinyModel(md, { seed: 11, ...o });
      const c = loadLlamaConfig(md);
      const want = referenceLogits(c, weights64(md), IDS);
      const model = LlamaModel.load(md);
      const { logits } = model.forward([IDS]);
      const got = logits.dataSync();
      expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-4 * maxAbs(want));
      logits.dispose();
      model.dispose();
    });
  }

  it('reads sharded safetensors through model.safetensors.index.json', () => {
    const md = join(dir, 'sharded');
    createTinyModel(md, { seed: 3 });
    const { tensors } = readSafetensors(join(md, 'model.safetensors'));
    const names = [...tensors.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((ns, i) => {
      const f = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(md, f), Object.fromEntries(ns.map((n) => [n, { shape: tensors.get(n)!.shape, data: tensors.get(n)!.data }])));
      for (const n of ns) weightMap[n] = f;
    });
    renameSync(join(md, 'model.safetensors'), join(md, 'single.bak'));
    writeFileSync(join(md, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const c = loadLlamaConfig(md);
    const want = referenceLogits(c, weights64(md), IDS);
    const model = LlamaModel.load(md);
    const { logits } = model.forward([IDS]);
    expect(maxAbsDiff(logits.dataSync(), want)).toBeLessThanOrEqual(1e-4 * maxAbs(want));
    logits.dispose();
    model.dispose();
  });
});

describe('edgetune-engine logits', () => {
  const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
  const run = (args: string[]) =>
    JSON.parse(execFileSync(process.execPath, [cli, 'logits', ...args], { encoding: 'utf8', maxBuffer: 1 << 28 })) as {
      logits: number[][][];
    };

  it('prints the fixture logits, with and without the PEFT adapter', () => {
    const ref = JSON.parse(readFileSync(join(FIXTURE_DIR, 'reference.json'), 'utf8'));
    const ids = join(dir, 'ids.json');
    writeFileSync(ids, JSON.stringify({ input_ids: ref.input_ids }));
    const plain = Float64Array.from(run(['--model', FIXTURE_DIR, '--ids', ids]).logits.flat(2));
    const want = Float64Array.from(ref.logits.flat(2));
    expect(maxAbsDiff(plain, want)).toBeLessThanOrEqual(1e-4 * maxAbs(want));
    const lora = Float64Array.from(run(['--model', FIXTURE_DIR, '--ids', ids, '--adapter', join(FIXTURE_DIR, 'lora')]).logits.flat(2));
    const wantLora = Float64Array.from(ref.lora_logits.flat(2));
    expect(maxAbsDiff(lora, wantLora)).toBeLessThanOrEqual(1e-4 * maxAbs(wantLora));
  });

  it('rejects ids outside the vocabulary with a clear error', () => {
    const ids = join(dir, 'bad-ids.json');
    writeFileSync(ids, JSON.stringify({ input_ids: [[1, 2, 99999]] }));
    let err = '';
    try {
      execFileSync(process.execPath, [cli, 'logits', '--model', FIXTURE_DIR, '--ids', ids], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
    }
    expect(err).toMatch(/input_ids must be/);
  });
});
