// Base models as GET /v1/models lists them from their folders: family (config.json's model_type), parameters,
// stored dtype and bytes from the safetensors headers (F32 and BF16 folders written here), the config's count
// when there are no weights; and admission against the device's TF.js heap ceiling: a worker on the wasm
// backend (4294901760 bytes) cannot hold TinyLlama-1.1B's float32 tensors, so the job is refused with
// plan_does_not_fit and the figures before it is queued, while the same job fits a cpu worker.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createPrisma } from '../../packages/store/src/db.js';
import { heartbeatWorker, removeWorker } from '../../packages/store/src/workers.js';
import type { WorkerDevice } from '../../packages/core/src/service/workers.js';
import { QUEUE_NAME } from '../../packages/core/src/service/queue.js';
import { Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

const GiB = 2 ** 30;
const WASM_CEILING = 4294901760;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let db: ReturnType<typeof createPrisma>;
let train: string;

/** A small decoder's config.json (hidden 32, 2 layers, 4 heads of 8, 2 KV heads, FFN 64, vocab 96, untied). */
const smallConfig = (modelType: string) => ({
  architectures: [{ llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', mistral: 'MistralForCausalLM' }[modelType]],
  model_type: modelType,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 96,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
});

/** Every tensor of the small decoder, HF names and shapes (Qwen2: q/k/v biases too). */
function smallTensors(biases: boolean): [string, number[]][] {
  const out: [string, number[]][] = [['model.embed_tokens.weight', [96, 32]]];
  for (let i = 0; i < 2; i++) {
    const p = `model.layers.${i}`;
    out.push(
      [`${p}.self_attn.q_proj.weight`, [32, 32]],
      [`${p}.self_attn.k_proj.weight`, [16, 32]],
      [`${p}.self_attn.v_proj.weight`, [16, 32]],
      [`${p}.self_attn.o_proj.weight`, [32, 32]],
      [`${p}.mlp.gate_proj.weight`, [64, 32]],
      [`${p}.mlp.up_proj.weight`, [64, 32]],
      [`${p}.mlp.down_proj.weight`, [32, 64]],
      [`${p}.input_layernorm.weight`, [32]],
      [`${p}.post_attention_layernorm.weight`, [32]],
    );
    if (biases) out.push([`${p}.self_attn.q_proj.bias`, [32]], [`${p}.self_attn.k_proj.bias`, [16]], [`${p}.self_attn.v_proj.bias`, [16]]);
  }
  out.push(['model.norm.weight', [32]], ['lm_head.weight', [96, 32]]);
  return out;
}

/** Writes model.safetensors by the format's layout: u64 LE header length, JSON header, zeroed tensor bytes. */
function writeSafetensors(file: string, tensors: [string, number[]][], dtype: 'F32' | 'BF16'): { params: number; bytes: number } {
  const width = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0,
    params = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype, shape, data_offsets: [offset, offset + n * width] };
    offset += n * width;
    params += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), Buffer.alloc(offset)]));
  return { params, bytes: offset };
}

/** Parameters of the small decoder as counted from its config (no biases). */
const CONFIG_PARAMS = 96 * 32 * 2 + 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32;
let f32: { params: number; bytes: number };
let bf16: { params: number; bytes: number };

const device = (backend: 'wasm' | 'cpu'): WorkerDevice => ({
  memoryBudgetBytes: 64 * GiB,
  totalMemoryBytes: 128 * GiB,
  threads: 2,
  backend,
  matmul: 'openblas(2 threads)',
  matmulGflops: 100,
  stepTimeFactor: null,
  tensorHeapCeilingBytes: backend === 'wasm' ? WASM_CEILING : null,
});

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => {
      const folder = (id: string, config: object) => {
        mkdirSync(join(d, id));
        writeFileSync(join(d, id, 'config.json'), JSON.stringify(config));
        return join(d, id);
      };
      f32 = writeSafetensors(join(folder('small-f32', smallConfig('llama')), 'model.safetensors'), smallTensors(false), 'F32');
      bf16 = writeSafetensors(join(folder('small-bf16', smallConfig('qwen2')), 'model.safetensors'), smallTensors(true), 'BF16');
      folder('small-mistral', smallConfig('mistral')); // config only: no weights on this host
      // TinyLlama-1.1B's config.json (the weights are not needed to plan it)
      folder('tinyllama-shape', {
        architectures: ['LlamaForCausalLM'],
        model_type: 'llama',
        hidden_size: 2048,
        intermediate_size: 5632,
        num_hidden_layers: 22,
        num_attention_heads: 32,
        num_key_value_heads: 4,
        vocab_size: 32000,
        max_position_embeddings: 2048,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
      });
    },
    env: { EDGETUNE_WORKER_HEARTBEAT_MS: '60000' },
  });
  api = await startTestApi(t);
  c = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 2 });
  const lines = `${Array.from({ length: 20 }, (_, i) =>
    JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' }),
  ).join('\n')}\n`;
  train = (await c.upload(lines)).body.id;
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

describe('GET /v1/models', () => {
  it('lists family, parameters, stored dtype and bytes from the safetensors headers, else the config', async () => {
    const r = await c.get('/v1/models');
    expect(r.status).toBe(200);
    const byId = Object.fromEntries(r.body.data.map((m: any) => [m.id, m]));
    expect(Object.keys(byId)).toEqual(['small-bf16', 'small-f32', 'small-mistral', 'tinyllama-shape']);
    expect(byId['small-f32']).toMatchObject({
      family: 'llama',
      n_params: CONFIG_PARAMS,
      stored_dtype: 'F32',
      weight_bytes: 4 * CONFIG_PARAMS,
    });
    expect(f32).toEqual({ params: CONFIG_PARAMS, bytes: 4 * CONFIG_PARAMS });
    // Qwen2's q/k/v biases are in the headers, not in the config's count
    expect(bf16.params).toBe(CONFIG_PARAMS + 2 * (32 + 16 + 16));
    expect(byId['small-bf16']).toMatchObject({
      family: 'qwen2',
      n_params: bf16.params,
      stored_dtype: 'BF16',
      weight_bytes: 2 * bf16.params,
    });
    expect(byId['small-mistral']).toMatchObject({ family: 'mistral', n_params: CONFIG_PARAMS, stored_dtype: null, weight_bytes: null });
    expect(byId['tinyllama-shape']).toMatchObject({ family: 'llama', stored_dtype: null, limits: { n_layers: 22 } });
    expect(byId['tinyllama-shape'].n_params).toBe(1_100_048_384); // TinyLlama-1.1B's parameter count
    // the existing fields stay
    expect((await c.get('/v1/models/small-bf16')).body).toMatchObject({
      object: 'model',
      hidden_size: 32,
      vocab_size: 96,
      limits: { n_layers: 2, max_length: 256 },
      fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });

  it('plans 16-bit weights outside the TF.js heap: the dry run records the stored dtype', async () => {
    const plan = async (model: string) => {
      const r = await c.post('/v1/jobs?dry_run=true', { model, training_file: train, hyperparameters: { max_steps: 8, max_length: 64 } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.plan;
    };
    const a = await plan('small-f32'),
      b = await plan('small-bf16');
    expect([a.stored_dtype, b.stored_dtype]).toEqual(['F32', 'BF16']);
    expect(b.forecast.peak_tf_bytes).toBeLessThan(a.forecast.peak_tf_bytes);
    expect((await plan('small-mistral')).stored_dtype).toBe('F32'); // no headers: float32 assumed
  });
});

describe("admission against the device's heap ceiling", () => {
  const body = () => ({
    model: 'tinyllama-shape',
    training_file: train,
    hyperparameters: { max_steps: 8, batch_size: 8, max_length: 256 },
    method: { type: 'edge_llm', edge_llm: { head_rank: 16 } },
  });

  it('a wasm worker cannot hold float32 TinyLlama-1.1B: 422 plan_does_not_fit with the figures, nothing queued; a cpu worker can', async () => {
    const redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
    const q = new Queue(QUEUE_NAME, { connection: redis, prefix: t.prefix });
    try {
      await heartbeatWorker(db, { id: 'box-w:1', host: 'box-w', pid: 1, concurrency: 1, device: device('wasm') });
      const w = (await c.get('/v1/workers')).body.data.find((x: any) => x.id === 'box-w:1');
      expect(w.device.tensor_heap_ceiling_bytes).toBe(WASM_CEILING);
      const dry = await c.post('/v1/jobs?dry_run=true', body());
      expect(dry.status, JSON.stringify(dry.body)).toBe(200);
      expect(dry.body.plan).toMatchObject({
        fits: false,
        stored_dtype: 'F32',
        device: { backend: 'wasm', tensor_heap_ceiling_bytes: WASM_CEILING, memory_budget_bytes: 64 * GiB, worker_id: 'box-w:1' },
      });
      expect(dry.body.plan.forecast.peak_tf_bytes).toBeGreaterThan(WASM_CEILING);
      const before = await q.count();
      const r = await c.post('/v1/jobs', body());
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      expect(r.body.code).toBe('plan_does_not_fit');
      const m = /needs about (\d+) MiB of TF\.js tensors, has (\d+) MiB \(the wasm backend's heap ceiling\)/.exec(r.body.detail);
      expect(m, r.body.detail).not.toBeNull();
      expect(Number(m![1])).toBe(Math.ceil(r.body.plan.forecast.peak_tf_bytes / 2 ** 20));
      expect(Number(m![2])).toBe(Math.floor(WASM_CEILING / 2 ** 20));
      expect((await c.get('/v1/jobs')).body.data).toEqual([]);
      expect(await q.count()).toBe(before);
      // the same job on a cpu worker (no ceiling) with the same 64 GiB budget fits
      await removeWorker(db, 'box-w:1');
      await heartbeatWorker(db, { id: 'box-c:2', host: 'box-c', pid: 2, concurrency: 1, device: device('cpu') });
      const cpu = await c.post('/v1/jobs?dry_run=true', body());
      expect(cpu.body.plan).toMatchObject({
        fits: true,
        device: { backend: 'cpu', tensor_heap_ceiling_bytes: null, worker_id: 'box-c:2' },
      });
    } finally {
      await removeWorker(db, 'box-c:2');
      await q.close();
      redis.disconnect();
    }
  });
});
