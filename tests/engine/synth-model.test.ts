// `synth-model`: random-weight model folders with the real families' configs, tensor layout, BF16 sharded
// safetensors and tokenizers. Shapes are cut down (one layer, a narrow hidden size) to stay fast.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLlamaConfig } from '../../packages/core/src/hf-config.js';
import {
  readModelWeights,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type TensorToWrite,
} from '../../packages/engine/src/io/safetensors.js';
import { safetensorsHeader, writeSafetensorsStream } from '../../packages/engine/src/io/safetensors-writer.js';
import {
  SYNTH_MODEL_NAMES,
  shardTensors,
  synthModel,
  synthTensorPlan,
  type SynthModelReport,
} from '../../packages/engine/src/synth/index.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { REPO_ROOT } from './helpers.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'edgetune-synth-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The raw safetensors header of a file, checked against the format: LE length, space padding, contiguous data. */
function header(file: string): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & {
  __metadata__?: Record<string, string>;
} {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  expect((8 + n) % 8).toBe(0);
  const text = buf.subarray(8, 8 + n).toString('utf8');
  expect(text.trimEnd().length).toBeGreaterThan(n - 8);
  const h = JSON.parse(text);
  let end = 0;
  for (const [name, t] of Object.entries(h) as Array<[string, { data_offsets: [number, number] }]>) {
    if (name === '__metadata__') continue;
    expect(t.data_offsets[0]).toBe(end);
    end = t.data_offsets[1];
  }
  expect(buf.byteLength).toBe(8 + n + end);
  return h;
}

function meanStd(x: Float32Array): { mean: number; std: number } {
  let s = 0,
    s2 = 0;
  for (const v of x) {
    s += v;
    s2 += v * v;
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(s2 / x.length - mean * mean) };
}

describe('synthModel', () => {
  let smol: SynthModelReport;
  beforeAll(() => {
    smol = synthModel({ like: 'smollm2-135m', outDir: join(root, 'smol'), layers: 1, maxShardBytes: 30_000_000, seed: 7 });
  });

  it('writes the SmolLM2-135M config, loadable by core, labelled as random', () => {
    const c = loadLlamaConfig(smol.dir);
    expect(c).toMatchObject({
      modelType: 'llama',
      vocabSize: 49152,
      hiddenSize: 576,
      intermediateSize: 1536,
      numHiddenLayers: 1,
      numAttentionHeads: 9,
      numKeyValueHeads: 3,
      headDim: 64,
      ropeTheta: 100000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: true,
      maxPositionEmbeddings: 8192,
      bosTokenId: 1,
      eosTokenId: 2,
      ropeScaling: null,
    });
    const raw = JSON.parse(readFileSync(join(smol.dir, 'config.json'), 'utf8'));
    expect(raw.torch_dtype).toBe('bfloat16');
    expect(raw.architectures).toEqual(['LlamaForCausalLM']);
    expect(raw.edgetune_synthetic).toBe('random init, not HuggingFaceTB/SmolLM2-135M-Instruct');
    expect(readFileSync(join(smol.dir, 'README.md'), 'utf8')).toMatch(/^# RANDOM WEIGHTS: not HuggingFaceTB\/SmolLM2-135M-Instruct/);
    expect(JSON.parse(readFileSync(join(smol.dir, 'generation_config.json'), 'utf8'))).toMatchObject({ bos_token_id: 1, eos_token_id: 2 });
  });

  it('shards BF16 tensors as save_pretrained does, with an index, and the engine reader reads them', () => {
    const files = readdirSync(smol.dir).filter((f) => f.endsWith('.safetensors'));
    expect(smol.shards).toBe(files.length);
    expect(files).toEqual(Array.from({ length: smol.shards }, (_, i) => `model-0000${i + 1}-of-0000${smol.shards}.safetensors`));
    expect(existsSync(join(smol.dir, 'model.safetensors'))).toBe(false);
    const index = JSON.parse(readFileSync(join(smol.dir, 'model.safetensors.index.json'), 'utf8'));
    const names = [
      'model.embed_tokens.weight',
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.mlp.down_proj.weight',
      'model.layers.0.mlp.gate_proj.weight',
      'model.layers.0.mlp.up_proj.weight',
      'model.layers.0.post_attention_layernorm.weight',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
      'model.norm.weight',
    ];
    expect(Object.keys(index.weight_map)).toEqual(names); // tied: no lm_head
    // The 56.6 MB embedding exceeds the 30 MB limit: a shard of its own, then the layer.
    expect(index.weight_map['model.embed_tokens.weight']).toBe('model-00001-of-00002.safetensors');
    expect(index.weight_map['model.norm.weight']).toBe('model-00002-of-00002.safetensors');
    let total = 0;
    let fileBytes = 0;
    for (const f of files) {
      const h = header(join(smol.dir, f));
      expect(h.__metadata__).toEqual({ format: 'pt', edgetune_synthetic: 'random init, not HuggingFaceTB/SmolLM2-135M-Instruct' });
      for (const [name, t] of Object.entries(h)) {
        if (name === '__metadata__') continue;
        expect(index.weight_map[name]).toBe(f);
        expect(t.dtype).toBe('BF16');
        total += t.data_offsets[1] - t.data_offsets[0];
      }
      fileBytes += statSync(join(smol.dir, f)).size;
    }
    expect(index.metadata.total_size).toBe(total);
    expect(total).toBe(smol.params * 2);
    expect(smol.bytes).toBe(fileBytes);
    const w = readModelWeights(smol.dir);
    expect(w.get('model.embed_tokens.weight')!.shape).toEqual([49152, 576]);
    expect(w.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([192, 576]);
    expect(w.get('model.layers.0.mlp.down_proj.weight')!.shape).toEqual([576, 1536]);
    expect([...w.get('model.norm.weight')!.data].every((x) => x === 1)).toBe(true);
    const { mean, std } = meanStd(w.get('model.layers.0.mlp.up_proj.weight')!.data as Float32Array);
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(std).toBeGreaterThan(0.0416 * 0.98); // SmolLM2-135M initializer_range 0.041666
    expect(std).toBeLessThan(0.0417 * 1.02);
  });

  it('writes a SmolLM2 tokenizer with its specials at 0..16 and vocab_size ids', async () => {
    const tok = await loadTokenizer(smol.dir);
    expect(tok.vocabSize).toBe(49152);
    expect([
      tok.tokenToId('<|endoftext|>'),
      tok.tokenToId('<|im_start|>'),
      tok.tokenToId('<|im_end|>'),
      tok.tokenToId('<empty_output>'),
    ]).toEqual([0, 1, 2, 16]);
    expect([tok.bosId, tok.eosId, tok.padId, tok.unkId]).toEqual([1, 2, 2, 0]);
    expect(tok.idToToken(49151)).toBe('<edgetune_filler_49151>');
    const text = tok.applyChatTemplate([{ role: 'user', content: 'What is 12 + 30?' }], { addGenerationPrompt: true });
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect(ids.every((i) => i >= 0 && i < 49152)).toBe(true);
    expect(ids.filter((i) => i === 1)).toHaveLength(3);
    expect(tok.decode(ids)).toBe(text);
  });

  it('Qwen2.5: q/k/v biases (zero), no o_proj bias, specials from 151643, one file when small', async () => {
    const r = synthModel({
      like: 'qwen2.5-0.5b',
      outDir: join(root, 'qwen'),
      layers: 1,
      overrides: { hiddenSize: 64, intermediateSize: 96, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    expect(r.shards).toBe(1);
    expect(existsSync(join(r.dir, 'model.safetensors.index.json'))).toBe(false);
    const c = loadLlamaConfig(r.dir);
    expect(c).toMatchObject({
      modelType: 'qwen2',
      vocabSize: 151936,
      ropeTheta: 1000000,
      rmsNormEps: 1e-6,
      eosTokenId: 151645,
      slidingWindow: null,
    });
    const h = header(join(r.dir, 'model.safetensors'));
    expect(h['model.layers.0.self_attn.q_proj.bias']).toMatchObject({ dtype: 'BF16', shape: [64] });
    expect(h['model.layers.0.self_attn.k_proj.bias']).toMatchObject({ dtype: 'BF16', shape: [32] });
    expect(h['model.layers.0.self_attn.v_proj.bias']).toMatchObject({ dtype: 'BF16', shape: [32] });
    expect(h['model.layers.0.self_attn.o_proj.bias']).toBeUndefined();
    expect(h['lm_head.weight']).toBeUndefined();
    const { tensors } = readSafetensors(join(r.dir, 'model.safetensors'));
    expect([...tensors.get('model.layers.0.self_attn.k_proj.bias')!.data].every((x) => x === 0)).toBe(true);
    const { mean, std } = meanStd(tensors.get('model.embed_tokens.weight')!.data as Float32Array);
    expect(Math.abs(mean)).toBeLessThan(0.0005);
    expect(Math.abs(std - 0.02)).toBeLessThan(0.0005);
    const tok = await loadTokenizer(r.dir);
    expect(tok.vocabSize).toBe(151936);
    expect([
      tok.tokenToId('<|endoftext|>'),
      tok.tokenToId('<|im_start|>'),
      tok.tokenToId('<|im_end|>'),
      tok.tokenToId('<|file_sep|>'),
    ]).toEqual([151643, 151644, 151645, 151664]);
    expect(tok.eosId).toBe(c.eosTokenId);
    expect(tok.addBos).toBe(false);
    expect(tok.encode('<|im_start|>user\nhi 2024<|im_end|>', { addSpecialTokens: false }).slice(0, 1)).toEqual([151644]);
  });

  it('Llama 3.2: llama3 rope scaling, multi-id eos, bos 128000 added by the tokenizer', async () => {
    const r = synthModel({
      like: 'llama-3.2-1b',
      outDir: join(root, 'llama'),
      layers: 1,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    const c = loadLlamaConfig(r.dir);
    expect(c.ropeScaling).toEqual({
      ropeType: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(c).toMatchObject({
      vocabSize: 128256,
      ropeTheta: 500000,
      maxPositionEmbeddings: 131072,
      tieWordEmbeddings: true,
      bosTokenId: 128000,
    });
    expect(JSON.parse(readFileSync(join(r.dir, 'config.json'), 'utf8')).eos_token_id).toEqual([128001, 128008, 128009]);
    const tok = await loadTokenizer(r.dir);
    expect(tok.vocabSize).toBe(128256);
    expect(['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|reserved_special_token_247|>'].map((t) => tok.tokenToId(t))).toEqual([
      128000, 128001, 128009, 128255,
    ]);
    expect(tok.encode('Hello')[0]).toBe(128000);
    expect(tok.eosId).toBe(128009);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toContain(
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('TinyLlama: untied lm_head, SentencePiece tokenizer with <unk>=0 <s>=1 </s>=2 and bos added', async () => {
    const r = synthModel({
      like: 'tinyllama-1.1b',
      outDir: join(root, 'tiny'),
      layers: 1,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 4, numKeyValueHeads: 1, headDim: 16 },
    });
    const h = header(join(r.dir, 'model.safetensors'));
    expect(h['lm_head.weight']).toMatchObject({ dtype: 'BF16', shape: [32000, 64] });
    expect(loadLlamaConfig(r.dir)).toMatchObject({
      tieWordEmbeddings: false,
      vocabSize: 32000,
      numKeyValueHeads: 1,
      maxPositionEmbeddings: 2048,
    });
    const tok = await loadTokenizer(r.dir);
    expect([tok.unkId, tok.bosId, tok.eosId, tok.vocabSize]).toEqual([0, 1, 2, 32000]);
    expect(tok.tokenToId('<0x0A>')).toBe(13);
    const ids = tok.encode('Hello world 🙂');
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Hello world 🙂');
  });

  it('is deterministic per seed and tensor name, whatever the layer count', () => {
    const a = synthModel({
      like: 'smollm2-135m',
      outDir: join(root, 'a'),
      layers: 2,
      seed: 7,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    const b = synthModel({
      like: 'smollm2-135m',
      outDir: join(root, 'b'),
      layers: 1,
      seed: 7,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    const c = synthModel({
      like: 'smollm2-135m',
      outDir: join(root, 'c'),
      layers: 1,
      seed: 8,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    const q = (d: string) => readModelWeights(d).get('model.layers.0.self_attn.q_proj.weight')!.data;
    expect(q(a.dir)).toEqual(q(b.dir));
    expect(q(a.dir)).not.toEqual(q(c.dir));
    // A rerun with another layout leaves no stale shards behind.
    synthModel({
      like: 'smollm2-135m',
      outDir: a.dir,
      layers: 2,
      seed: 7,
      maxShardBytes: 20_000,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    synthModel({
      like: 'smollm2-135m',
      outDir: a.dir,
      layers: 2,
      seed: 7,
      overrides: { hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 32 },
    });
    expect(readdirSync(a.dir).filter((f) => f.includes('safetensors'))).toEqual(['model.safetensors']);
    expect(() => synthModel({ like: 'gpt-5', outDir: join(root, 'x') })).toThrow(
      /unknown model "gpt-5"; known: smollm2-135m, smollm2-360m/,
    );
    expect(() => synthModel({ like: 'smollm2-135m', outDir: join(root, 'x'), layers: 0 })).toThrow(/layers must be a positive integer/);
  });
});

describe('streaming safetensors writer', () => {
  it('pads the header to 8 bytes and lays tensors back to back', () => {
    const specs = [
      { name: 'a', dtype: 'BF16' as const, shape: [3] },
      { name: 'b', dtype: 'F32' as const, shape: [2, 2] },
    ];
    const { head, offsets, dataBytes } = safetensorsHeader(specs, { format: 'pt' });
    expect(head.byteLength % 8).toBe(0);
    expect(offsets).toEqual([
      [0, 6],
      [6, 22],
    ]);
    expect(dataBytes).toBe(22);
    const file = join(root, 'w.safetensors');
    const bytes = writeSafetensorsStream(
      file,
      specs,
      (t, chunk, off) => {
        if (t.name === 'a') new Uint16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2).fill(0x3f80);
        else for (let i = 0; i < chunk.byteLength; i += 4) new DataView(chunk.buffer, chunk.byteOffset).setFloat32(i, (off + i) / 4, true);
      },
      { chunkBytes: 8, metadata: { format: 'pt' } },
    );
    expect(bytes).toBe(statSync(file).size);
    const { tensors, metadata } = readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect([...tensors.get('a')!.data]).toEqual([1, 1, 1]);
    expect([...tensors.get('b')!.data]).toEqual([0, 1, 2, 3]);
    expect(() => safetensorsHeader([specs[0]!, specs[0]!])).toThrow(/duplicate/);
  });

  it('writeSafetensors streams tensor by tensor the bytes serializeSafetensors builds whole', () => {
    const tensors = new Map<string, TensorToWrite>([
      ['z.bf16', { shape: [2, 3], data: Float32Array.from([1, -2, 0.5, 3.25, -0.125, 7]), dtype: 'BF16' }],
      ['a.u8', { shape: [5], data: Uint8Array.from([1, 2, 3, 4, 255]), dtype: 'U8' }],
      ['m.f32', { shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) }],
      ['h.f16', { shape: [2], data: Uint16Array.from([0x3c00, 0xc000]), dtype: 'F16' }],
      // read when the writer reaches it (a tensor out of the TF.js heap)
      ['l.lazy', { shape: [2], dtype: 'F32', data: () => Float32Array.from([4, 5]) }],
    ]);
    const file = join(root, 'streamed.safetensors');
    writeSafetensors(file, tensors, { format: 'edgetune-packed' });
    expect(Buffer.compare(readFileSync(file), serializeSafetensors(tensors, { format: 'edgetune-packed' }))).toBe(0);
    const back = readSafetensors(file);
    expect([...back.tensors.get('z.bf16')!.data]).toEqual([1, -2, 0.5, 3.25, -0.125, 7]);
    expect([...back.tensors.get('h.f16')!.data]).toEqual([1, -2]);
    expect([...back.tensors.get('l.lazy')!.data]).toEqual([4, 5]);
    expect(() => writeSafetensors(join(root, 'bad.safetensors'), { x: { shape: [4], data: () => new Float32Array(3) } })).toThrow(
      /shape \[4\] needs 4 values, got 3/,
    );
    expect(() => writeSafetensors(join(root, 'bad.safetensors'), { x: { shape: [4], data: new Float32Array(3) } })).toThrow(
      /shape \[4\] needs 4 values, got 3/,
    );
  });

  it('shards in order, giving an oversized tensor a shard of its own', () => {
    const t = (name: string, n: number) => ({ name, dtype: 'BF16' as const, shape: [n] });
    const shards = shardTensors([t('big', 100), t('a', 20), t('b', 20), t('c', 20)], 100);
    expect(shards.map((s) => s.map((x) => x.name))).toEqual([['big'], ['a', 'b'], ['c']]);
    const plan = synthTensorPlan({
      ...loadLlamaConfig(join(REPO_ROOT, 'tests', 'fixtures', 'llama-tiny-gqa')),
      numHiddenLayers: 1,
      tieWordEmbeddings: false,
    });
    expect(plan.at(-1)!.name).toBe('lm_head.weight');
  });
});

describe('edgetune-engine synth-model', () => {
  const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
  it('prints one JSON line, and one error line listing the names for an unknown model', () => {
    const out = join(root, 'cli');
    const ok = spawnSync(process.execPath, [cli, 'synth-model', '--like', 'smollm2-135m', '--layers', '1', '--out', out, '--seed', '3'], {
      encoding: 'utf8',
    });
    expect(ok.status).toBe(0);
    const lines = ok.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const r = JSON.parse(lines[0]!);
    expect(r).toMatchObject({ dir: out, params: 31852224, shards: 1 });
    expect(r.bytes).toBe(statSync(join(out, 'model.safetensors')).size);
    expect(typeof r.seconds).toBe('number');
    const bad = spawnSync(process.execPath, [cli, 'synth-model', '--like', 'llama-9b', '--out', join(root, 'bad')], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toBe(`edgetune-engine: SynthModelError: unknown model "llama-9b"; known: ${SYNTH_MODEL_NAMES.join(', ')}\n`);
  });
});
