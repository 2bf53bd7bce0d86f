// Jobs end to end through HTTP with real workers (child processes running the engine in BullMQ
// sandboxed processors) against real PostgreSQL and Redis: a whole job from upload to adapter download
// (PEFT file checked against the engine's own evaluation), cancel, a worker killed with SIGKILL whose job
// resumes on a new worker from its last checkpoint, and SIGTERM checkpointing and re-queueing.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { applyPeftAdapter } from '../../packages/engine/src/model/lora.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { loadExamples } from '../../packages/engine/src/tune/run.js';
import { loadEdgeAdapter, plainPath } from '../../packages/engine/src/tune/artifacts.js';
import { evaluatePaths } from '../../packages/engine/src/infer/evaluate.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { modelFingerprint } from '../../packages/core/src/service/fingerprint.js';
import {
  ADMIN_KEY,
  Client,
  createTestEnv,
  readSse,
  spawnWorker,
  startTestApi,
  stopWorker,
  waitFor,
  type TestEnv,
  type WorkerProcess,
} from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let train: string, val: string;
const workers: WorkerProcess[] = [];
let shared: WorkerProcess | undefined;
const MODEL = 'tiny-llama';

const job = async (id: string) => (await c.get(`/v1/jobs/${id}`)).body;
const events = async (id: string) => (await c.get(`/v1/jobs/${id}/events?limit=1000`)).body.data as any[];
const untilStatus = (id: string, statuses: string[], ms = 90_000) =>
  waitFor(
    async () => {
      const j = await job(id);
      return statuses.includes(j.status) && j;
    },
    ms,
    `job ${id} in ${statuses}`,
  );
const worker = (name: string) => {
  const w = spawnWorker(t, name);
  workers.push(w);
  return w;
};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  await initBackend({ quiet: true });
  t = await createTestEnv({ setupModels: (d) => createTinyModel(join(d, MODEL), { layers: 4 }) });
  writeToyTask(join(t.dir, 'train.jsonl'), 48, 1);
  writeToyTask(join(t.dir, 'val.jsonl'), 24, 2);
  api = await startTestApi(t);
  c = new Client(api.url);
  train = (await c.upload(readFileSync(join(t.dir, 'train.jsonl')), 'train.jsonl')).body.id;
  val = (await c.upload(readFileSync(join(t.dir, 'val.jsonl')), 'val.jsonl')).body.id;
});

afterEach(async () => {
  for (const w of workers.splice(0)) await stopWorker(w);
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

describe('with one worker', () => {
  beforeAll(() => {
    shared = spawnWorker(t, 'w-main');
  });
  afterAll(async () => {
    if (shared) await stopWorker(shared);
  });

  it('upload -> job -> SSE progress -> result -> checkpoints -> PEFT and bundle downloads that the engine loads', async () => {
    // the worker reports its measured device; the API plans the job for it
    const me = await waitFor(
      async () => (await c.get('/v1/workers')).body.data.find((w: any) => w.host === 'w-main' && w.online),
      30_000,
      'worker device report',
    );
    expect(me).toMatchObject({
      id: `w-main:${shared!.proc.pid}`,
      concurrency: 1,
      device: { backend: 'wasm', threads: expect.any(Number), matmul_gflops: expect.any(Number), tensor_heap_ceiling_bytes: 4294901760 },
    });
    expect(me.device.matmul_gflops).toBeGreaterThan(0);
    // measured on the reference workload, within measureStepFactor's clamp (a fast machine reads its floor)
    expect(me.device.step_time_factor).toBeGreaterThanOrEqual(0.25);
    expect(me.device.step_time_factor).toBeLessThanOrEqual(4);
    expect(me.device.memory_budget_bytes).toBeGreaterThan(0);
    const created = await c.post('/v1/jobs', {
      model: MODEL,
      training_file: train,
      validation_file: val,
      suffix: 'toy',
      hyperparameters: { max_steps: 12, batch_size: 4, lora_r: 4, learning_rate: 5e-3 },
      checkpointing: { every_n_steps: 4, keep_after_finish: true },
    });
    expect(created.status).toBe(201);
    expect(created.body.plan.device).toMatchObject({
      source: 'worker',
      worker_id: me.id,
      matmul_gflops: me.device.matmul_gflops,
      step_time_factor: me.device.step_time_factor,
      memory_budget_bytes: me.device.memory_budget_bytes,
      tensor_heap_ceiling_bytes: 4294901760, // the wasm backend's, as the worker reported it
    });
    const id = created.body.id;
    const sse = await readSse(`${api.url}/v1/jobs/${id}/events/stream`, ADMIN_KEY, { timeoutMs: 90_000 });
    const j = await job(id);
    expect(j.status).toBe('succeeded');

    // the stream carried everything, in order, and ended with the job
    const all = await events(id);
    expect(sse.messages.filter((m) => m.event !== 'end').map((m) => m.id)).toEqual(all.map((e) => e.id));
    expect(sse.messages.at(-1)).toMatchObject({ event: 'end', data: JSON.stringify({ status: 'succeeded' }) });
    const steps = all.filter((e) => e.type === 'metrics' && e.data.step).map((e) => e.data);
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(steps.map((s) => s.exit_layer)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    for (const s of steps)
      expect(s).toMatchObject({
        total_steps: 12,
        train_loss: expect.any(Number),
        tokens_per_sec: expect.any(Number),
        eta_seconds: expect.any(Number),
        rss_bytes: expect.any(Number), // the job process's, summed per worker by GET /metrics
      });
    const statuses = all.filter((e) => e.type === 'status').map((e) => e.data.status);
    expect(statuses).toEqual(['validating_files', 'queued', 'running', 'succeeded']);

    // the job records the engine's report
    expect(j).toMatchObject({
      progress: { step: 12, total_steps: 12, percent: 100, eta_seconds: null },
      attempt: 1,
      error: null,
      trained_tokens: expect.any(Number),
      fine_tuned_model: `ft:${MODEL}:toy:${id}`,
      result_files: ['bundle', 'peft'],
      latest_metrics: { step: 12 },
    });
    expect(j.finished_at).toBeGreaterThanOrEqual(j.started_at);
    expect(j.plan.device).toMatchObject({ source: 'worker', worker_id: me.id });
    expect(j.result.exits.map((e: any) => e.layer)).toEqual([0, 1, 2, 3]);
    expect(['max', 'mean', 'confidence', 'weighted']).toContain(j.result.voting_rule);
    expect(j.result.voted_accuracy).toBe(j.result.voted[j.result.voting_rule].accuracy);
    expect(j.result).toMatchObject({ validation_examples: 24, train_examples: 48, steps: 12 });

    const ck = (await c.get(`/v1/jobs/${id}/checkpoints`)).body;
    // asked to keep them: the latest two of steps 4, 8 and 12 (no in-loop validation, so no best to keep besides)
    expect(ck.data.map((x: any) => x.step_number)).toEqual([12, 8]);
    expect(ck.data[0]).toMatchObject({
      object: 'fine_tuning.job.checkpoint',
      fine_tuning_job_id: id,
      bytes: expect.any(Number),
      metrics: { train_loss: expect.any(Number) },
    });
    expect(j.checkpoints).toEqual({ count: 2, latest_id: ck.data[0].id });

    // PEFT download: tar of exactly the two PEFT files; sha256 header; the engine loading it the PEFT
    // way computes the deepest exit's path exactly as the job's evaluation did
    const peft = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`);
    expect(peft.status).toBe(200);
    expect(peft.headers.get('content-type')).toBe('application/x-tar');
    expect(peft.headers.get('x-content-sha256')).toBe(sha256(peft.data));
    expect(peft.headers.get('etag')).toBe(`"sha256-${sha256(peft.data)}"`);
    expect(peft.headers.get('repr-digest')).toBe(`sha-256=:${createHash('sha256').update(peft.data).digest('base64')}:`);
    expect(Number(peft.headers.get('content-length'))).toBe(peft.data.length);
    const peftDir = join(t.dir, 'peft');
    mkdirSync(peftDir);
    writeFileSync(join(t.dir, 'peft.tar'), peft.data);
    await tar.extract({ file: join(t.dir, 'peft.tar'), cwd: peftDir });
    expect(readdirSync(peftDir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(readFileSync(join(peftDir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      base_model_name_or_path: MODEL,
      layers_to_transform: [3],
      modules_to_save: expect.arrayContaining(['lm_head', 'model.norm']),
    });

    const modelDir = join(t.modelsDir, MODEL);
    const tok = await loadTokenizer(modelDir);
    const { examples } = await loadExamples(join(t.dir, 'val.jsonl'), tok, j.hyperparameters.max_length);
    const padId = tok.padId ?? tok.eosId ?? 0;
    const base = LlamaModel.load(modelDir);
    const before = evaluatePaths(base, [plainPath(base)], examples, { padId }).perExit[0];
    applyPeftAdapter(base, peftDir);
    const viaPeft = evaluatePaths(base, [plainPath(base)], examples, { padId }).perExit[0];
    const deepest = j.result.exits.at(-1);
    expect(viaPeft.accuracy).toBe(deepest.accuracy);
    expect(viaPeft.loss).toBeCloseTo(deepest.loss, 4);
    expect(Math.abs(before.loss - deepest.loss)).toBeGreaterThan(1e-3); // the adapter changes the model
    base.dispose();

    // Range: a slice, the tail, and an unsatisfiable range
    const part = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`, { range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${peft.data.length}`);
    expect(part.data.equals(peft.data.subarray(100, 200))).toBe(true);
    const tail = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`, { range: 'bytes=-10' });
    expect(tail.data.equals(peft.data.subarray(peft.data.length - 10))).toBe(true);
    const open = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`, { range: `bytes=${peft.data.length - 5}-` });
    expect(open.data.equals(peft.data.subarray(peft.data.length - 5))).toBe(true);
    const bad = await c.get(`/v1/jobs/${id}/adapter?format=peft`, { range: `bytes=${peft.data.length}-` });
    expect(bad.status).toBe(416);
    expect(bad.body.code).toBe('range_not_satisfiable');
    expect(bad.headers.get('content-range')).toBe(`bytes */${peft.data.length}`);
    const stale = await c.bytes(`/v1/jobs/${id}/adapter?format=peft`, { range: 'bytes=0-9', 'if-range': '"other"' });
    expect(stale.status).toBe(200);

    // bundle: manifest sums hold; the voted model loads and evaluates to the job's per-exit and voted numbers
    const bundle = await c.bytes(`/v1/jobs/${id}/adapter?format=bundle`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('x-content-sha256')).toBe(sha256(bundle.data));
    const bdir = join(t.dir, 'bundle');
    mkdirSync(bdir);
    writeFileSync(join(t.dir, 'bundle.tar'), bundle.data);
    await tar.extract({ file: join(t.dir, 'bundle.tar'), cwd: bdir });
    const manifest = JSON.parse(readFileSync(join(bdir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({
      format: 'edgetune.bundle/1',
      job_id: id,
      base_model: MODEL,
      exit_layers: [0, 1, 2, 3],
      voting_rule: j.result.voting_rule,
    });
    expect(Object.keys(manifest.files).sort()).toEqual([
      'edge_llm.json',
      'edge_llm.safetensors',
      'metrics.json',
      'peft/adapter_config.json',
      'peft/adapter_model.safetensors',
    ]);
    for (const [f, m] of Object.entries(manifest.files as Record<string, { sha256: string; bytes: number }>)) {
      const data = readFileSync(join(bdir, f));
      expect(sha256(data), f).toBe(m.sha256);
      expect(data.length).toBe(m.bytes);
    }
    expect(
      readFileSync(join(bdir, 'peft', 'adapter_model.safetensors')).equals(readFileSync(join(peftDir, 'adapter_model.safetensors'))),
    ).toBe(true);
    const voted = LlamaModel.load(modelDir);
    const { paths, manifest: edge } = loadEdgeAdapter(voted, bdir);
    expect(edge.voting_rule).toBe(j.result.voting_rule);
    const ev = evaluatePaths(voted, paths, examples, { padId });
    ev.perExit.forEach((e, k) => {
      expect(e.accuracy).toBe(j.result.exits[k].accuracy);
      expect(e.loss).toBeCloseTo(j.result.exits[k].loss, 4);
    });
    expect(ev.voted[edge.voting_rule].accuracy).toBe(j.result.voted_accuracy);
    voted.dispose();

    // a finished job cannot be cancelled
    expect((await c.post(`/v1/jobs/${id}/cancel`)).status).toBe(409);
  });

  it('rag_lora with early stopping: validation points as metrics events, the curve and best step in the result; PEFT files at the top of the bundle with the RAG index', async () => {
    const created = await c.post('/v1/jobs', {
      model: MODEL,
      training_file: train,
      validation_file: val,
      method: { type: 'rag_lora', rag: { k: 1 } },
      seed: 3,
      hyperparameters: { max_steps: 8, batch_size: 4, lora_r: 4, eval_steps: 2, early_stopping: { patience: 1, min_delta: 1 } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id;
    const j = await untilStatus(id, ['succeeded', 'failed']);
    expect(j.error).toBeNull();
    // a min_delta no accuracy or loss change reaches: the second evaluation stops training, the first's weights are kept
    expect(j.result).toMatchObject({ stopped_by: 'early_stopping', best_step: 2, steps: 4 });
    expect(j.result.validation_curve.map((p: any) => p.step)).toEqual([2, 4]);
    for (const p of j.result.validation_curve)
      expect(p).toMatchObject({ metric: expect.stringMatching(/^(accuracy|loss)$/), value: expect.any(Number), loss: expect.any(Number) });
    expect(j.result.validation_curve[1].elapsed_s).toBeGreaterThan(j.result.validation_curve[0].elapsed_s);
    expect(j.progress).toMatchObject({ step: 4, total_steps: 8 });
    const points = (await events(id)).filter((e) => e.type === 'metrics' && e.data.validation_point).map((e) => e.data.validation_point);
    expect(points).toEqual(j.result.validation_curve);
    expect(j.result_files).toEqual(['bundle', 'peft']);
    const bundle = await c.bytes(`/v1/jobs/${id}/adapter?format=bundle`);
    const bdir = join(t.dir, `bundle-${id}`);
    mkdirSync(bdir);
    writeFileSync(join(t.dir, `${id}.tar`), bundle.data);
    await tar.extract({ file: join(t.dir, `${id}.tar`), cwd: bdir });
    expect(Object.keys(JSON.parse(readFileSync(join(bdir, 'manifest.json'), 'utf8')).files).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'edge_llm.json',
      'metrics.json',
      'rag_index.json',
    ]);
    expect(JSON.parse(readFileSync(join(bdir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(MODEL);
    expect((await c.bytes(`/v1/jobs/${id}/adapter?format=peft`)).status).toBe(200);
  });

  it('rag trains nothing: the job succeeds at 100% of 0 steps with a bundle (index, no PEFT adapter)', async () => {
    const created = await c.post('/v1/jobs', { model: MODEL, training_file: train, validation_file: val, method: { type: 'rag' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id;
    const j = await untilStatus(id, ['succeeded', 'failed']);
    expect(j.error).toBeNull();
    expect(j).toMatchObject({ progress: { step: 0, total_steps: 0, percent: 100 }, result_files: ['bundle'] });
    expect(j.result).toMatchObject({ steps: 0, stopped_by: 'max_steps', best_step: null, validation_curve: [], validation_examples: 24 });
    expect(j.result.exits.map((e: any) => e.layer)).toEqual([3]);
    expect((await c.get(`/v1/jobs/${id}/adapter?format=peft`)).body.code).toBe('adapter_format_unavailable');
    const bundle = await c.bytes(`/v1/jobs/${id}/adapter?format=bundle`);
    expect(bundle.status).toBe(200);
    const bdir = join(t.dir, `bundle-${id}`);
    mkdirSync(bdir);
    writeFileSync(join(t.dir, `${id}.tar`), bundle.data);
    await tar.extract({ file: join(t.dir, `${id}.tar`), cwd: bdir });
    expect(readdirSync(bdir).sort()).toEqual(['edge_llm.json', 'manifest.json', 'metrics.json', 'rag_index.json']);
    expect(JSON.parse(readFileSync(join(bdir, 'edge_llm.json'), 'utf8'))).toMatchObject({ mode: 'none', base_model: MODEL, rag: { k: 2 } });
  });

  it('compression: the first job profiles and stores a policy, the next with the same model and budget reuses it; plans record forecast vs measured; the bundle rebuilds the compressed voted model; other weights under the same model id get their own policy', async () => {
    const budget = { target_sparsity: 0.3, avg_bits: 4 };
    const device = { memory_budget_bytes: 4 * 2 ** 30, threads: 1 };
    const body = {
      model: MODEL,
      training_file: train,
      validation_file: val,
      device,
      hyperparameters: { max_steps: 8, batch_size: 4, lora_r: 4, learning_rate: 5e-3 },
      method: { type: 'edge_llm', edge_llm: { compression: budget, schedule: 'round_robin', prefix: 'adapted' } },
    };
    const run = async () => {
      const created = await c.post('/v1/jobs', body);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body.plan).toMatchObject({ source: 'api', fits: true });
      const done = await untilStatus(created.body.id, ['succeeded', 'failed', 'cancelled']);
      expect(done.status, JSON.stringify(done.error) + shared!.log().slice(-3000)).toBe('succeeded');
      return done;
    };
    const a = await run();
    expect(a.policy_id).toMatch(/^pol_/);
    // the sandboxed processor fingerprinted the model from the hashes its worker made at startup: it read no model file
    expect(shared!.log()).toMatch(
      new RegExp(`\\[${a.id}\\] \\+\\d+ ms: model fingerprint [0-9a-f]{12} \\(0 model files hashed by this process\\)`),
    );
    expect(a.result.compression).toMatchObject({
      policy_id: a.policy_id,
      policy_reused: false,
      mean_sparsity: expect.closeTo(0.3, 5),
      mean_bits: expect.any(Number),
    });
    expect(a.result.compression.mean_bits).toBeLessThanOrEqual(4);
    expect(a.result.compression.stored_bytes).toBeLessThan(a.result.compression.dense_bytes / 4);
    // the worker's plan replaced the API's, with what it measured and the admission forecast kept
    expect(a.plan).toMatchObject({
      source: 'worker',
      fits: true,
      exit_layers: [0, 1, 2, 3],
      micro_batch: 4,
      policy: { id: a.policy_id, source: 'run' },
      device: { memory_budget_bytes: device.memory_budget_bytes, threads: 1 },
      admission: { fits: true, memory_budget_bytes: device.memory_budget_bytes },
    });
    expect(a.plan.storage.every((s: string) => s === 'int4' || s === 'int8')).toBe(true);
    // the worker's plan measured this machine's step-time factor (reference workload) and forecast with it
    expect(a.plan.device.step_time_factor).toBeGreaterThanOrEqual(0.25);
    expect(a.plan.device.step_time_factor).toBeLessThanOrEqual(4);
    const logged = new RegExp(
      `\\[${a.id}\\] device: SGEMM \\d+ GFLOP/s, reference step [\\d.]+ ms vs [\\d.]+ forecast \\([\\d.]+\\): step-time factor ([\\d.]+)`,
    ).exec(shared!.log());
    expect(Number(logged?.[1])).toBeCloseTo(a.plan.device.step_time_factor, 1);
    for (const k of ['peak_rss_bytes', 'peak_tf_bytes', 'step_ms']) {
      expect(a.plan.measured[k], k).toBeGreaterThan(0);
      expect(a.plan.error[k], k).toBeCloseTo(a.plan.forecast[k] / a.plan.measured[k] - 1, 2);
    }
    const evA = await events(a.id);
    expect(evA.map((e) => e.message)).toEqual(
      expect.arrayContaining([
        `Compression policy ${a.policy_id} created from a fresh sensitivity profile and stored`,
        expect.stringMatching(/^Plan forecast vs measured: peak RSS \d+ MiB vs \d+ MiB/),
      ]),
    );
    let policies = (await c.get(`/v1/policies?model=${MODEL}`)).body.data;
    expect(policies).toHaveLength(1);
    expect(policies[0]).toMatchObject({
      id: a.policy_id,
      model: MODEL,
      budget: { ...budget, method: 'wanda', sparsity_rule: 'owl', bits_rule: 'budgeted', group_size: 0 },
      n_layers: 4,
      job_count: 1,
    });
    expect(policies[0].calibration.description).toContain(`training file ${train}`);
    expect(policies[0].calibration.description).not.toContain(t.dir);
    expect(policies[0].sensitivity.profile.layers).toHaveLength(4);

    const b = await run();
    expect(b.policy_id).toBe(a.policy_id);
    expect(b.result.compression).toMatchObject({
      policy_id: a.policy_id,
      policy_reused: true,
      stored_bytes: a.result.compression.stored_bytes,
    });
    expect((await events(b.id)).map((e) => e.message)).toContain(
      `Compression policy ${a.policy_id} reused (stored for this model and budget: no profiling)`,
    );
    expect(shared!.log()).toContain(`[${b.id}] LUC policy ${a.policy_id} reused`);
    policies = (await c.get('/v1/policies')).body.data;
    expect(policies.map((p: any) => p.id)).toEqual([a.policy_id]);
    expect(policies[0].job_count).toBe(2);
    expect((await c.post('/v1/jobs?dry_run=true', body)).body).toMatchObject({
      policy_id: a.policy_id,
      plan: { policy: { id: a.policy_id, source: 'stored' }, storage: a.plan.storage },
    });

    // the bundle carries the policy and the packed weights: the voted compressed model evaluates as the job did
    const bundle = await c.bytes(`/v1/jobs/${b.id}/adapter?format=bundle`);
    const bdir = join(t.dir, 'bundle-compressed');
    mkdirSync(bdir);
    writeFileSync(join(t.dir, 'bundle-compressed.tar'), bundle.data);
    await tar.extract({ file: join(t.dir, 'bundle-compressed.tar'), cwd: bdir });
    const manifest = JSON.parse(readFileSync(join(bdir, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.files).sort()).toEqual([
      'compressed_model.safetensors',
      'edge_llm.json',
      'edge_llm.safetensors',
      'metrics.json',
      'peft/adapter_config.json',
      'peft/adapter_model.safetensors',
      'policy.json',
    ]);
    expect(manifest.compression).toMatchObject({ policy_id: a.policy_id, budget: { target_sparsity: 0.3, avg_bits: 4 } });
    for (const [f, m] of Object.entries(manifest.files as Record<string, { sha256: string }>))
      expect(sha256(readFileSync(join(bdir, f))), f).toBe(m.sha256);
    const policyJson = JSON.parse(readFileSync(join(bdir, 'policy.json'), 'utf8'));
    expect(policyJson).toMatchObject({ id: a.policy_id, object: 'policy', sparsity: policies[0].sparsity, bits: policies[0].bits });
    const edge = JSON.parse(readFileSync(join(bdir, 'edge_llm.json'), 'utf8'));
    expect(edge.compression).toMatchObject({ policy_id: a.policy_id, policy: { sparsity: policies[0].sparsity, bits: policies[0].bits } });
    // the job's adapted prefix reached the engine: every exit path runs LoRA from layer 0
    expect(b.method.edge_llm.prefix).toBe('adapted');
    expect(edge).toMatchObject({ prefix: 'adapted', path_starts: [0, 0, 0, 0], window_starts: [0, 1, 2, 3] });
    const modelDir = join(t.modelsDir, MODEL);
    const tok = await loadTokenizer(modelDir);
    const { examples } = await loadExamples(join(t.dir, 'val.jsonl'), tok, b.hyperparameters.max_length);
    const voted = LlamaModel.load(modelDir);
    const { paths } = loadEdgeAdapter(voted, bdir);
    const ev = evaluatePaths(voted, paths, examples, { padId: tok.padId ?? tok.eosId ?? 0 });
    ev.perExit.forEach((e, k) => expect(e.loss).toBeCloseTo(b.result.exits[k].loss, 4));
    expect(ev.voted[b.result.voting_rule].accuracy).toBe(b.result.voted_accuracy);
    voted.dispose();

    // the model folder is re-pretrained with the same shapes (same id, other weights): its policy is not reused, a new one is profiled
    const fpA = await modelFingerprint(modelDir);
    expect(policies[0].model_fingerprint).toBe(fpA);
    createTinyModel(modelDir, { layers: 4, seed: 8 });
    const fpC = await modelFingerprint(modelDir);
    expect(fpC).not.toBe(fpA);
    expect((await c.post('/v1/jobs?dry_run=true', body)).body).toMatchObject({
      policy_id: null,
      plan: { policy: { id: null, source: 'estimated' } },
    });
    const cJob = await run();
    expect(cJob.policy_id).toMatch(/^pol_/);
    expect(cJob.policy_id).not.toBe(a.policy_id);
    expect(cJob.result.compression).toMatchObject({ policy_id: cJob.policy_id, policy_reused: false });
    expect(shared!.log()).toMatch(
      new RegExp(`\\[${cJob.id}\\] \\+\\d+ ms: model fingerprint ${fpC!.slice(0, 12)} \\([1-9]\\d* model files hashed`),
    ); // the changed file was read
    expect((await events(cJob.id)).map((e) => e.message)).toContain(
      `Compression policy ${cJob.policy_id} created from a fresh sensitivity profile and stored`,
    );
    policies = (await c.get(`/v1/policies?model=${MODEL}`)).body.data;
    expect(policies.map((p: any) => [p.id, p.model_fingerprint])).toEqual([
      [cJob.policy_id, fpC],
      [a.policy_id, fpA],
    ]);
    expect((await c.get(`/v1/models/${MODEL}`)).body.fingerprint).toBe(fpC); // the worker recorded the weights it found
    // the old weights back: their policy applies again
    createTinyModel(modelDir, { layers: 4, seed: 7 });
    expect(await modelFingerprint(modelDir)).toBe(fpA);
    expect((await c.post('/v1/jobs?dry_run=true', body)).body).toMatchObject({
      policy_id: a.policy_id,
      plan: { policy: { id: a.policy_id, source: 'stored' } },
    });
  });

  it('cancel reaches a running job within seconds; it ends cancelled with no adapter', async () => {
    const id = (
      await c.post('/v1/jobs', {
        model: MODEL,
        training_file: train,
        hyperparameters: { max_steps: 5000, batch_size: 4, lora_r: 4 },
        checkpointing: { every_n_steps: 1000 },
      })
    ).body.id;
    await waitFor(
      async () => {
        const j = await job(id);
        return j.status === 'running' && j.progress.step >= 3 && j;
      },
      60_000,
      'training',
    );
    const t0 = Date.now();
    const r = await c.post(`/v1/jobs/${id}/cancel`);
    expect(r.status).toBe(200);
    expect(['cancelling', 'cancelled']).toContain(r.body.status);
    const done = await untilStatus(id, ['cancelled', 'succeeded', 'failed'], 15_000);
    expect(done.status).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(done.progress.step).toBeLessThan(5000);
    expect(done.result_files).toEqual([]);
    expect((await c.get(`/v1/jobs/${id}/adapter`)).body.code).toBe('adapter_not_ready');
    const statuses = (await events(id)).filter((e) => e.type === 'status').map((e) => e.data.status);
    expect(statuses.slice(-2)).toEqual(['cancelling', 'cancelled']);
    // no step after the cancel was acknowledged
    await new Promise((res) => setTimeout(res, 500));
    expect((await job(id)).progress.step).toBe(done.progress.step);
  });
});

describe('worker death and shutdown', () => {
  it('a worker killed with SIGKILL mid-job: a new worker resumes from the last checkpoint without recording a step twice', async () => {
    const total = 80,
      every = 5;
    const id = (
      await c.post('/v1/jobs', {
        model: MODEL,
        training_file: train,
        validation_file: val,
        hyperparameters: { max_steps: total, batch_size: 4, lora_r: 4 },
        checkpointing: { every_n_steps: every },
      })
    ).body.id;
    const a = worker('w-doomed');
    await waitFor(
      async () => {
        const ck = (await c.get(`/v1/jobs/${id}/checkpoints?limit=1`)).body.data[0];
        return ck && ck.step_number >= 3 * every;
      },
      60_000,
      'checkpoints',
    );
    a.killGroup();
    await a.exited;
    const killedAt = (await job(id)).progress.step;
    const last = (await c.get(`/v1/jobs/${id}/checkpoints?limit=1`)).body.data[0].step_number;
    expect(killedAt).toBeLessThan(total);
    expect((await job(id)).status).toBe('running');
    await new Promise((res) => setTimeout(res, 300));
    expect((await job(id)).progress.step).toBe(killedAt); // nothing runs on: the sandbox died with its worker

    const b = worker('w-rescue');
    const done = await untilStatus(id, ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(done.status, JSON.stringify(done.error) + b.log()).toBe('succeeded');
    expect(done.attempt).toBe(2);
    const all = await events(id);
    const resumedIdx = all.findIndex(
      (e) => e.type === 'status' && e.data.resumed_from_step !== undefined && e.data.resumed_from_step !== null,
    );
    expect(all[resumedIdx].data).toMatchObject({ resumed_from_step: last, attempt: 2, worker_id: expect.stringMatching(/^w-rescue:/) });
    const before = all
      .slice(0, resumedIdx)
      .filter((e) => e.type === 'metrics' && e.data.step)
      .map((e) => e.data.step);
    expect(before.at(-1)).toBeGreaterThanOrEqual(last);
    // the new attempt retrains from the checkpoint, but records only the steps no earlier attempt recorded
    const after = all
      .slice(resumedIdx + 1)
      .filter((e) => e.type === 'metrics' && e.data.step)
      .map((e) => e.data.step);
    const recorded = before.at(-1) ?? 0;
    expect(after).toEqual(Array.from({ length: total - recorded }, (_, i) => recorded + 1 + i));
    expect(done.result.steps).toBe(total);
    expect(done.result_files).toEqual(['bundle', 'peft']);
  });

  it('an idle worker re-measures its device every EDGETUNE_WORKER_REPROBE_MS and reports the new reading', async () => {
    const w = spawnWorker(t, 'w-reprobe', { EDGETUNE_WORKER_REPROBE_MS: '1500' });
    workers.push(w);
    await waitFor(
      async () => (w.log().match(/device re-measured: SGEMM \d+ GFLOP\/s/g) ?? []).length >= 2 || null,
      60_000,
      'two re-measurements',
    );
    const readings = [...w.log().matchAll(/device(?: re-measured)?: .*SGEMM (\d+) GFLOP\/s/g)].map((m) => Number(m[1]));
    expect(readings.length).toBeGreaterThanOrEqual(3);
    // the row carries one of the readings (the latest the heartbeat sent)
    const row = await waitFor(
      async () => (await c.get('/v1/workers')).body.data.find((x: any) => x.id === `w-reprobe:${w.proc.pid}`),
      30_000,
      'report',
    );
    expect(readings.some((g) => Math.abs(g - row.device.matmul_gflops) <= 0.5)).toBe(true);
  });

  it('SIGTERM: the worker checkpoints the step it is on, re-queues the job and exits cleanly; the next worker resumes there', async () => {
    const total = 400; // enough that the job is still running when SIGTERM lands, even on a fast machine
    const id = (
      await c.post('/v1/jobs', {
        model: MODEL,
        training_file: train,
        hyperparameters: { max_steps: total, batch_size: 4, lora_r: 4 },
        checkpointing: { every_n_steps: 1000 },
      })
    ).body.id;
    const a = worker('w-term');
    await waitFor(
      async () => {
        const j = await job(id);
        return j.progress.step >= 10 && j;
      },
      60_000,
      'training',
    );
    await waitFor(async () => (await c.get('/v1/workers')).body.data.some((w: any) => w.host === 'w-term'), 30_000, 'worker device report');
    const t0 = Date.now();
    a.signal('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // a stopped worker takes no jobs: its device report is gone
    expect((await c.get('/v1/workers')).body.data.map((w: any) => w.host)).not.toContain('w-term');
    const q = await job(id);
    expect(q.status).toBe('queued');
    expect(q.progress.step).toBeLessThan(total);
    const ck = (await c.get(`/v1/jobs/${id}/checkpoints`)).body.data;
    expect(ck).toHaveLength(1); // every_n_steps 1000: only the shutdown checkpoint
    const s = ck[0].step_number;
    expect(s).toBe(q.progress.step);
    const requeued = (await events(id)).find((e) => e.type === 'status' && e.data.status === 'queued' && e.data.resume_step !== undefined);
    expect(requeued.data.resume_step).toBe(s);

    worker('w-next');
    const done = await untilStatus(id, ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(done.status).toBe('succeeded');
    const all = await events(id);
    const resumedIdx = all.findIndex((e) => e.type === 'status' && e.data.resumed_from_step === s);
    expect(resumedIdx).toBeGreaterThan(0);
    const after = all
      .slice(resumedIdx + 1)
      .filter((e) => e.type === 'metrics' && e.data.step)
      .map((e) => e.data.step);
    expect(after[0]).toBe(s + 1);
    expect(after.at(-1)).toBe(total);
  });
});
