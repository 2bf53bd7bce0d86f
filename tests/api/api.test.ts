// The API over HTTP against real PostgreSQL and Redis (own database and queue prefix), without a worker:
// auth and tenancy, projects and keys, files (validation, limits), jobs (create/list/get/cancel),
// events (JSON + SSE), adapters before success, idempotency, problem+json errors.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { fakeModel, ADMIN_KEY, Client, createTestEnv, readSse, REPO_ROOT, startTestApi, type TestEnv } from '../helpers/service.js';

const MAX_FILE_BYTES = 64 * 1024;
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let admin: Client;
let user: Client; // a second project's key
let otherProjectId: string;

const line = (i: number) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' });
const goodJsonl = (n: number) => `${Array.from({ length: n }, (_, i) => line(i)).join('\n')}\n`;

function expectProblem(r: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({
    status,
    code,
    type: expect.stringContaining(code),
    title: expect.any(String),
    detail: expect.any(String),
  });
}

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => {
      fakeModel(join(d, 'tiny-llama'));
      fakeModel(join(d, 'deep-llama'), { layers: 8 });
      mkdirSync(join(d, 'not-a-model'));
    },
    env: { EDGETUNE_MAX_FILE_BYTES: String(MAX_FILE_BYTES) },
  });
  api = await startTestApi(t);
  admin = new Client(api.url);
  const p = await admin.post('/v1/projects', { name: 'team-b' });
  otherProjectId = p.body.id;
  const k = await admin.post(`/v1/projects/${otherProjectId}/keys`, { name: 'ci' });
  user = admin.withKey(k.body.secret);
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

describe('health', () => {
  it('answers /healthz and /readyz without a key', async () => {
    const anon = admin.withKey(null);
    expect((await anon.get('/healthz')).body).toEqual({ status: 'ok' });
    const r = await anon.get('/readyz');
    expect(r.status).toBe(200);
    expect(r.body.checks).toEqual({ database: 'ok', redis: 'ok' });
  });
});

describe('auth', () => {
  it('401 without a key, with a malformed header, and with an unknown key', async () => {
    expectProblem(await admin.withKey(null).get('/v1/files'), 401, 'missing_api_key');
    expectProblem(await admin.get('/v1/files', { authorization: 'Basic abc' }), 401, 'invalid_api_key');
    const bad = await admin.withKey('et-not-a-key').get('/v1/jobs');
    expectProblem(bad, 401, 'invalid_api_key');
    expect(bad.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('project admin: create project and keys (secret shown once), list without secrets, revoke', async () => {
    const p = await admin.post('/v1/projects', { name: 'team-c' });
    expect(p.status).toBe(201);
    expect(p.body).toMatchObject({ object: 'project', name: 'team-c', id: expect.stringMatching(/^proj_/) });
    const k = await admin.post(`/v1/projects/${p.body.id}/keys`, { name: 'laptop' });
    expect(k.status).toBe(201);
    expect(k.body).toMatchObject({ object: 'api_key', project_id: p.body.id, admin: false, secret: expect.stringMatching(/^et-/) });
    expect(k.body.prefix).toBe(k.body.secret.slice(0, 7));
    const c = admin.withKey(k.body.secret);
    expect((await c.get('/v1/files')).status).toBe(200);
    const list = await admin.get(`/v1/projects/${p.body.id}/keys`);
    expect(list.body.data).toHaveLength(1);
    expect(list.body.data[0].secret).toBeUndefined();
    expect(list.body.data[0].last_used_at).toEqual(expect.any(Number));
    const rv = await admin.delete(`/v1/projects/${p.body.id}/keys/${k.body.id}`);
    expect(rv.status).toBe(200);
    expect(rv.body.revoked_at).toEqual(expect.any(Number));
    expectProblem(await c.get('/v1/files'), 401, 'invalid_api_key');
    const projects = await admin.get('/v1/projects?limit=100');
    expect(projects.body.data.map((x: any) => x.name)).toEqual(expect.arrayContaining(['default', 'team-b', 'team-c']));
  });

  it('non-admin keys get 403 on project routes; unknown project 404', async () => {
    expectProblem(await user.post('/v1/projects', { name: 'x' }), 403, 'admin_required');
    expectProblem(await user.get('/v1/projects'), 403, 'admin_required');
    expectProblem(await user.post(`/v1/projects/${otherProjectId}/keys`, { name: 'x' }), 403, 'admin_required');
    expectProblem(await admin.post('/v1/projects/proj_nope/keys', { name: 'x' }), 404, 'project_not_found');
    expectProblem(await admin.delete(`/v1/projects/${otherProjectId}/keys/key_nope`), 404, 'api_key_not_found');
  });

  it('the bootstrap key is created once: a restart with another bootstrap key adds nothing', async () => {
    const again = await startTestApi({
      ...t,
      env: { ...t.env, EDGETUNE_BOOTSTRAP_API_KEY: 'et-another-bootstrap-key-xxxxxxxxxxxxxxxxxxxx' },
    });
    try {
      expectProblem(await new Client(again.url, 'et-another-bootstrap-key-xxxxxxxxxxxxxxxxxxxx').get('/v1/files'), 401, 'invalid_api_key');
      expect((await new Client(again.url, ADMIN_KEY).get('/v1/files')).status).toBe(200);
    } finally {
      await again.stop();
    }
  });
});

describe('models', () => {
  it('lists every model folder with a config.json, with limits', async () => {
    const r = await admin.get('/v1/models');
    expect(r.status).toBe(200);
    expect(r.body.data.map((m: any) => m.id)).toEqual(['deep-llama', 'tiny-llama']);
    const m = (await admin.get('/v1/models/deep-llama')).body;
    expect(m).toMatchObject({
      object: 'model',
      hidden_size: 32,
      limits: { n_layers: 8, max_lora_rank: 32, max_length: 512, default_exit_layers: [1, 3, 5, 7] },
    });
    expect(m.limits.target_modules).toContain('q_proj');
    expect(m.hosts[0]).toMatch(/^api@/);
    expect(m.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(r.body.data[1].fingerprint).not.toBe(m.fingerprint);
    expectProblem(await admin.get('/v1/models/nope'), 404, 'model_not_found');
  });
});

describe('files', () => {
  it('uploads, lists with cursors, gets, downloads and deletes', async () => {
    const content = `${goodJsonl(5)}\n\n`; // blank lines are fine
    const up = await admin.upload(content, 'données é.jsonl');
    expect(up.status).toBe(201);
    expect(up.body).toMatchObject({
      object: 'file',
      bytes: Buffer.byteLength(content),
      purpose: 'fine-tune',
      status: 'processed',
      records: 5,
      filename: 'données é.jsonl',
      id: expect.stringMatching(/^file_/),
    });
    expect(up.body.sha256).toMatch(/^[0-9a-f]{64}$/);
    const ids = [up.body.id];
    for (let i = 0; i < 3; i++) ids.push((await admin.upload(goodJsonl(2), `f${i}.jsonl`)).body.id);
    const page1 = await admin.get('/v1/files?limit=2');
    expect(page1.body).toMatchObject({ object: 'list', has_more: true });
    expect(page1.body.data.map((f: any) => f.id)).toEqual([ids[3], ids[2]]);
    const page2 = await admin.get(`/v1/files?limit=2&after=${page1.body.last_id}`);
    expect(page2.body.data.map((f: any) => f.id)).toEqual([ids[1], ids[0]]);
    expectProblem(await admin.get('/v1/files?after=file_nope'), 400, 'invalid_cursor');
    expect((await admin.get(`/v1/files/${ids[0]}`)).body.records).toBe(5);
    const dl = await admin.bytes(`/v1/files/${ids[0]}/content`);
    expect(dl.status).toBe(200);
    expect(dl.data.toString('utf8')).toBe(content);
    expect(dl.headers.get('content-disposition')).toContain("filename*=UTF-8''donn%C3%A9es%20%C3%A9.jsonl");
    const del = await admin.delete(`/v1/files/${ids[1]}`);
    expect(del.body).toEqual({ id: ids[1], object: 'file', deleted: true });
    expectProblem(await admin.get(`/v1/files/${ids[1]}`), 404, 'file_not_found');
    expectProblem(await admin.delete(`/v1/files/${ids[1]}`), 404, 'file_not_found');
  });

  it("another project's file answers 404 everywhere", async () => {
    const mine = (await admin.upload(goodJsonl(2))).body.id;
    expectProblem(await user.get(`/v1/files/${mine}`), 404, 'file_not_found');
    expectProblem(await user.get(`/v1/files/${mine}/content`), 404, 'file_not_found');
    expectProblem(await user.delete(`/v1/files/${mine}`), 404, 'file_not_found');
    expect((await user.get('/v1/files')).body.data.map((f: any) => f.id)).not.toContain(mine);
  });

  it('names every bad line by number (422)', async () => {
    const text = [
      line(0),
      '{"prompt": "x", "completion": ',
      line(2),
      '{"messages": [{"role": "robot", "content": "hi"}]}',
      '[1,2]',
      '{"prompt": "a", "completion": ""}',
    ].join('\n');
    const r = await admin.upload(text, 'bad.jsonl');
    expectProblem(r, 422, 'invalid_file');
    expect(r.body.param).toBe('file');
    expect(r.body.detail).toMatch(/^4 lines are invalid; first error at line 2/);
    expect(r.body.errors.map((e: any) => [e.line, e.code])).toEqual([
      [2, 'invalid_json'],
      [4, 'invalid_record'],
      [5, 'invalid_record'],
      [6, 'invalid_record'],
    ]);
    expect(r.body.errors[1].param).toBe('messages[0].role');
    expect(r.body.errors[3].param).toBe('completion');
  });

  it('refuses empty files, missing or wrong fields, non-multipart bodies, and files over the limit', async () => {
    const empty = await admin.upload('\n\n', 'empty.jsonl');
    expectProblem(empty, 422, 'invalid_file');
    expectProblem(await admin.upload('', 'empty.jsonl'), 422, 'invalid_file');
    const noPurpose = await admin.upload(goodJsonl(1), 'x.jsonl', null);
    expectProblem(noPurpose, 400, 'invalid_request');
    expect(noPurpose.body.errors).toEqual([{ param: 'purpose', message: 'purpose is required' }]);
    const badPurpose = await admin.upload(goodJsonl(1), 'x.jsonl', 'assistants');
    expectProblem(badPurpose, 400, 'invalid_request');
    expect(badPurpose.body.param).toBe('purpose');
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    const noFile = await admin.request('POST', '/v1/files', { body: form });
    expectProblem(noFile, 400, 'invalid_request');
    expect(noFile.body.errors[0].param).toBe('file');
    expectProblem(await admin.post('/v1/files', { purpose: 'fine-tune' }), 415, 'unsupported_media_type');
    const big = await admin.upload(goodJsonl(3000), 'big.jsonl');
    expect(Buffer.byteLength(goodJsonl(3000))).toBeGreaterThan(MAX_FILE_BYTES);
    expectProblem(big, 413, 'file_too_large');
  });

  it('Idempotency-Key: a replay returns the same file, another body under the key is 409', async () => {
    const h = { 'idempotency-key': 'upload-1' };
    const a = await admin.upload(goodJsonl(3), 'a.jsonl', 'fine-tune', h);
    const b = await admin.upload(goodJsonl(3), 'a.jsonl', 'fine-tune', h);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expectProblem(await admin.upload(goodJsonl(4), 'a.jsonl', 'fine-tune', h), 409, 'idempotency_key_reused');
    // keys are per project
    const c = await user.upload(goodJsonl(3), 'a.jsonl', 'fine-tune', h);
    expect(c.status).toBe(201);
    expect(c.body.id).not.toBe(a.body.id);
  });
});

describe('jobs', () => {
  let train: string, val: string, q: Queue;
  beforeAll(async () => {
    train = (await admin.upload(goodJsonl(40), 'train.jsonl')).body.id;
    val = (await admin.upload(goodJsonl(10), 'val.jsonl')).body.id;
    q = new Queue('tuning', { connection: new Redis(t.redisUrl, { maxRetriesPerRequest: null }), prefix: t.prefix });
  });
  afterAll(async () => {
    await q?.close();
  });

  it('creates a queued job with resolved hyperparameters and enqueues it', async () => {
    const r = await admin.post('/v1/jobs', {
      model: 'tiny-llama',
      training_file: train,
      validation_file: val,
      suffix: 'spam-v1',
      seed: 7,
      metadata: { team: 'ops' },
      method: { type: 'edge_llm', edge_llm: { schedule: 'round_robin' } },
      hyperparameters: { n_epochs: 2, batch_size: 4, learning_rate_multiplier: 2, lora_r: 4 },
    });
    expect(r.status).toBe(201);
    const j = r.body;
    expect(j).toMatchObject({
      object: 'fine_tuning.job',
      status: 'queued',
      model: 'tiny-llama',
      training_file: train,
      validation_file: val,
      suffix: 'spam-v1',
      seed: 7,
      metadata: { team: 'ops' },
      fine_tuned_model: null,
      error: null,
      result: null,
      attempt: 0,
      result_files: [],
      method: {
        type: 'edge_llm',
        edge_llm: {
          exit_layers: [0, 1, 2, 3],
          schedule: 'round_robin',
          train_heads: true,
          head_rank: 0,
          prefix: 'backbone',
          voting: 'auto',
        },
      },
      hyperparameters: {
        n_epochs: 2,
        batch_size: 4,
        learning_rate_multiplier: 2,
        learning_rate: 0.002,
        max_steps: null,
        lora_r: 4,
        lora_alpha: 8,
        max_length: 256,
        lr_scheduler: 'cosine',
      },
      progress: { step: 0, total_steps: 20, percent: 0, eta_seconds: null },
      checkpointing: { every_n_steps: 2 },
    });
    expect(j.id).toMatch(/^ftjob_/);
    expect(j.created_at).toBeGreaterThan(1.7e9);
    expect(j.hyperparameters.target_modules).toHaveLength(7);
    const qj = await q.getJob(j.id);
    expect(qj?.data).toEqual({ jobId: j.id });
    expect(await qj?.getState()).toBe('waiting');
    const got = await admin.get(`/v1/jobs/${j.id}`);
    expect(got.body).toMatchObject({ id: j.id, status: 'queued' });
    const ev = await admin.get(`/v1/jobs/${j.id}/events`);
    expect(ev.body.data.map((e: any) => e.message)).toEqual([
      'Job created; validating files',
      'Files validated: 40 training records, 10 validation records',
      'Job queued',
    ]);
    expect(ev.body.data[0]).toMatchObject({
      object: 'fine_tuning.job.event',
      type: 'status',
      level: 'info',
      data: { status: 'validating_files' },
    });
  });

  it('lists every bad field of a create request (400)', async () => {
    const r = await admin.post('/v1/jobs', {
      training_file: 5,
      extra: true,
      method: { type: 'dpo' },
      hyperparameters: { n_epochs: 0, batch_size: 'big', learning_rate: -1, lora_dropout: 2 },
      suffix: 'bad suffix!',
      metadata: { k: 5 },
    });
    expectProblem(r, 400, 'invalid_request');
    const params = r.body.errors.map((e: any) => e.param).sort();
    expect(params).toEqual(
      [
        'extra',
        'hyperparameters.batch_size',
        'hyperparameters.learning_rate',
        'hyperparameters.lora_dropout',
        'hyperparameters.n_epochs',
        'metadata.k',
        'method.type',
        'model',
        'suffix',
        'training_file',
      ].sort(),
    );
    for (const e of r.body.errors) expect(e.message).toMatch(new RegExp(`^${e.param.replace(/[.[\]]/g, '\\$&')} `));
    const hr = await admin.post('/v1/jobs', {
      model: 'tiny-llama',
      training_file: train,
      method: { type: 'edge_llm', edge_llm: { head_rank: -1, prefix: 'lora' } },
    });
    expectProblem(hr, 400, 'invalid_request');
    expect(hr.body.errors.map((e: any) => e.param).sort()).toEqual(['method.edge_llm.head_rank', 'method.edge_llm.prefix']);
    expectProblem(
      await admin.request('POST', '/v1/jobs', { body: '{"model": ', headers: { 'content-type': 'application/json' } }),
      400,
      'invalid_json',
    );
    expectProblem(
      await admin.request('POST', '/v1/jobs', { body: 'model=x', headers: { 'content-type': 'text/plain' } }),
      415,
      'unsupported_media_type',
    );
  });

  it('refuses unknown models, foreign or missing files, and settings the model cannot take', async () => {
    const base = { model: 'tiny-llama', training_file: train };
    const e1 = await admin.post('/v1/jobs', { ...base, model: 'gpt-5' });
    expectProblem(e1, 400, 'model_not_found');
    expect(e1.body.param).toBe('model');
    const foreign = (await user.upload(goodJsonl(4))).body.id;
    const e2 = await admin.post('/v1/jobs', { ...base, training_file: foreign });
    expectProblem(e2, 400, 'file_not_found');
    expect(e2.body.param).toBe('training_file');
    const e3 = await admin.post('/v1/jobs', { ...base, validation_file: 'file_nope' });
    expect(e3.body.param).toBe('validation_file');
    const cases: [unknown, string, string][] = [
      [{ method: { type: 'edge_llm', edge_llm: { exit_layers: [1, 2] } } }, 'invalid_exit_layers', 'method.edge_llm.exit_layers'],
      [{ method: { type: 'edge_llm', edge_llm: { exit_layers: [1, 1, 3] } } }, 'invalid_exit_layers', 'method.edge_llm.exit_layers'],
      [{ method: { type: 'edge_llm', edge_llm: { exit_layers: [3, 9] } } }, 'invalid_exit_layers', 'method.edge_llm.exit_layers'],
      [{ hyperparameters: { lora_r: 64 } }, 'invalid_hyperparameters', 'hyperparameters.lora_r'],
      [{ hyperparameters: { max_length: 4096 } }, 'invalid_hyperparameters', 'hyperparameters.max_length'],
      [{ hyperparameters: { target_modules: ['q_proj', 'conv'] } }, 'invalid_hyperparameters', 'hyperparameters.target_modules'],
      [{ hyperparameters: { max_steps: 2 } }, 'invalid_hyperparameters', 'hyperparameters.max_steps'],
      [{ method: { type: 'lora', edge_llm: { schedule: 'random' } } }, 'invalid_method', 'method.edge_llm'],
      [
        { method: { type: 'rag', edge_llm: { compression: { target_sparsity: 0.5, avg_bits: 4 } } } },
        'invalid_method',
        'method.edge_llm.compression',
      ],
      [{ method: { type: 'edge_llm', rag: { k: 2 } } }, 'invalid_method', 'method.rag'],
      [{ hyperparameters: { early_stopping: { patience: 2 } } }, 'validation_file_required', 'hyperparameters.early_stopping'],
      [{ hyperparameters: { eval_steps: 4 } }, 'validation_file_required', 'hyperparameters.eval_steps'],
      [{ hyperparameters: { time_budget_s: 7 * 24 * 3600 + 1 } }, 'invalid_request', 'hyperparameters.time_budget_s'],
      [{ method: { type: 'rag', rag: { k: 0 } } }, 'invalid_request', 'method.rag.k'],
      [
        { hyperparameters: { early_stopping: { patience: 0, min_delta: -1 } } },
        'invalid_request',
        'hyperparameters.early_stopping.patience',
      ],
    ];
    for (const [extra, code, param] of cases) {
      const r = await admin.post('/v1/jobs', { ...base, ...(extra as object) });
      expectProblem(r, 400, code);
      expect(r.body.param, JSON.stringify(extra)).toBe(param);
    }
  });

  it('lists with filters (status, model, metadata) and cursors; other projects see nothing', async () => {
    const mk = async (model: string, metadata: Record<string, string>) =>
      (await admin.post('/v1/jobs', { model, training_file: train, metadata, hyperparameters: { max_steps: 8 } })).body;
    const a = await mk('deep-llama', { team: 'red', env: 'prod' });
    const b = await mk('deep-llama', { team: 'blue', env: 'prod' });
    const c = await mk('tiny-llama', { team: 'red', env: 'dev' });
    expect(a.method.edge_llm.exit_layers).toEqual([1, 3, 5, 7]);
    const ids = async (qs: string) => (await admin.get(`/v1/jobs?${qs}`)).body.data.map((j: any) => j.id);
    expect(await ids('model=deep-llama')).toEqual([b.id, a.id]);
    expect(await ids('metadata[team]=red')).toEqual([c.id, a.id]);
    expect(await ids('metadata[team]=red&metadata[env]=prod')).toEqual([a.id]);
    expect(await ids('metadata[team]=red&model=tiny-llama')).toEqual([c.id]);
    const p1 = (await admin.get('/v1/jobs?limit=2')).body;
    expect(p1.data.map((j: any) => j.id)).toEqual([c.id, b.id]);
    expect(p1.has_more).toBe(true);
    expect(await ids(`limit=1&after=${p1.last_id}`)).toEqual([a.id]);
    await admin.post(`/v1/jobs/${b.id}/cancel`);
    expect(await ids('status=cancelled&model=deep-llama')).toEqual([b.id]);
    expectProblem(await admin.get('/v1/jobs?status=done'), 400, 'invalid_request');
    expect(await user.get('/v1/jobs').then((r) => r.body.data)).toEqual([]);
    for (const path of [
      `/v1/jobs/${a.id}`,
      `/v1/jobs/${a.id}/events`,
      `/v1/jobs/${a.id}/checkpoints`,
      `/v1/jobs/${a.id}/adapter`,
      `/v1/jobs/${a.id}/events/stream`,
    ]) {
      expectProblem(await user.get(path), 404, 'job_not_found');
    }
    expectProblem(await user.post(`/v1/jobs/${a.id}/cancel`), 404, 'job_not_found');
  });

  it('cancels a queued job at once (and removes it from the queue); cancelling twice is 409', async () => {
    const j = (await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } })).body;
    expect(await (await q.getJob(j.id))?.getState()).toBe('waiting');
    const c = await admin.post(`/v1/jobs/${j.id}/cancel`);
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ status: 'cancelled', finished_at: expect.any(Number) });
    expect(await q.getJob(j.id)).toBeUndefined();
    const again = await admin.post(`/v1/jobs/${j.id}/cancel`);
    expectProblem(again, 409, 'invalid_state');
    const dl = await admin.get(`/v1/jobs/${j.id}/adapter`);
    expectProblem(dl, 409, 'adapter_not_ready');
    expectProblem(await admin.get(`/v1/jobs/${j.id}/adapter?format=gguf`), 400, 'invalid_request');
    expect((await admin.get(`/v1/jobs/${j.id}/checkpoints`)).body).toEqual({
      object: 'list',
      data: [],
      has_more: false,
      first_id: null,
      last_id: null,
    });
    expectProblem(await admin.get('/v1/jobs/ftjob_nope'), 404, 'job_not_found');
    expectProblem(await admin.post('/v1/jobs/ftjob_nope/cancel'), 404, 'job_not_found');
  });

  it('events: JSON pages forward with after; SSE replays, honours Last-Event-ID and ends with the job', async () => {
    const j = (await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } })).body;
    await admin.post(`/v1/jobs/${j.id}/cancel`);
    const all = (await admin.get(`/v1/jobs/${j.id}/events`)).body.data;
    expect(all.map((e: any) => e.message)).toEqual([
      'Job created; validating files',
      'Files validated: 40 training records',
      'Job queued',
      'Job cancelled',
    ]);
    const p1 = (await admin.get(`/v1/jobs/${j.id}/events?limit=3`)).body;
    expect(p1.has_more).toBe(true);
    const p2 = (await admin.get(`/v1/jobs/${j.id}/events?limit=3&after=${p1.last_id}`)).body;
    expect([...p1.data, ...p2.data]).toEqual(all);
    expect(p2.has_more).toBe(false);
    expectProblem(await admin.get(`/v1/jobs/${j.id}/events?after=evt_nope`), 400, 'invalid_cursor');

    const url = `${api.url}/v1/jobs/${j.id}/events/stream`;
    const s = await readSse(url, ADMIN_KEY);
    expect(s.contentType).toMatch(/^text\/event-stream/);
    expect(s.messages.map((m) => m.id).filter(Boolean)).toEqual(all.map((e: any) => e.id));
    expect(s.messages.slice(0, -1).map((m) => JSON.parse(m.data))).toEqual(all);
    expect(s.messages.map((m) => m.event)).toEqual(['status', 'message', 'status', 'status', 'end']);
    expect(JSON.parse(s.messages.at(-1)!.data)).toEqual({ status: 'cancelled' });
    const resumed = await readSse(url, ADMIN_KEY, { lastEventId: all[1].id });
    expect(resumed.messages.map((m) => m.id).filter(Boolean)).toEqual(all.slice(2).map((e: any) => e.id));
    const bad = await admin.get(`/v1/jobs/${j.id}/events/stream`, { 'last-event-id': 'evt_nope' });
    expectProblem(bad, 400, 'invalid_cursor');
    expect(bad.body.param).toBe('Last-Event-ID');
  });

  it('SSE pushes events of a live job as they are written', async () => {
    const j = (await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } })).body;
    const stream = readSse(`${api.url}/v1/jobs/${j.id}/events/stream`, ADMIN_KEY, { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await admin.post(`/v1/jobs/${j.id}/cancel`);
    const s = await stream;
    expect(Date.now() - t0).toBeLessThan(1500); // pushed via pub/sub, not the 2 s poll
    expect(s.messages.map((m) => m.event).slice(-2)).toEqual(['status', 'end']);
  });

  it('Idempotency-Key on job creation and cancel', async () => {
    const body = { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } };
    const h = { 'idempotency-key': 'job-create-1' };
    const a = await admin.post('/v1/jobs', body, h);
    const b = await admin.post('/v1/jobs', body, h);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expectProblem(await admin.post('/v1/jobs', { ...body, seed: 1 }, h), 409, 'idempotency_key_reused');
    expectProblem(await admin.post(`/v1/jobs/${a.body.id}/cancel`, {}, h), 409, 'idempotency_key_reused');
    expectProblem(await admin.post('/v1/jobs', body, { 'idempotency-key': 'x'.repeat(300) }), 400, 'invalid_idempotency_key');
    const c1 = await admin.post(`/v1/jobs/${a.body.id}/cancel`, {}, { 'idempotency-key': 'cancel-1' });
    const c2 = await admin.post(`/v1/jobs/${a.body.id}/cancel`, {}, { 'idempotency-key': 'cancel-1' });
    expect([c1.status, c2.status]).toEqual([200, 200]);
    expect(c2.body.status).toBe('cancelled');
    // a failed request releases its key
    const bad = { ...body, model: 'nope' };
    expectProblem(await admin.post('/v1/jobs', bad, { 'idempotency-key': 'job-create-2' }), 400, 'model_not_found');
    expect((await admin.post('/v1/jobs', body, { 'idempotency-key': 'job-create-2' })).status).toBe(201);
  });

  it('dry run: returns the resolved job and its plan, creates nothing (no row, no queue entry)', async () => {
    const before = { jobs: (await admin.get('/v1/jobs?limit=100')).body.data.length, queue: await q.count() };
    const body = {
      model: 'tiny-llama',
      training_file: train,
      validation_file: val,
      hyperparameters: { max_steps: 8, batch_size: 8, max_length: 64 },
      device: { memory_budget_bytes: 2 ** 30, threads: 2 },
    };
    const r = await admin.post('/v1/jobs?dry_run=true', body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({
      object: 'job.plan',
      model: 'tiny-llama',
      training_file: train,
      validation_file: val,
      training_records: 40,
      total_steps: 8,
      policy_id: null,
      device: { memory_budget_bytes: 2 ** 30, threads: 2 },
      hyperparameters: { batch_size: 8, max_length: 64 },
      method: { type: 'edge_llm', edge_llm: { exit_layers: [0, 1, 2, 3], compression: null } },
      plan: {
        source: 'api',
        fits: true,
        reason: null,
        exit_layers: [0, 1, 2, 3],
        window_depth: 1,
        micro_batch: 8,
        gradient_accumulation_steps: 1,
        storage: ['f32', 'f32', 'f32', 'f32'],
        policy: null,
        measured: null,
        error: null,
        admission: null,
        device: { memory_budget_bytes: 2 ** 30, threads: 2, matmul_gflops: 20 },
      },
    });
    const f = r.body.plan.forecast;
    for (const k of [
      'peak_rss_bytes',
      'peak_tf_bytes',
      'weight_bytes',
      'trainable_bytes',
      'activation_bytes',
      'step_ms',
      'total_ms',
      'flops_per_step',
    ])
      expect(f[k], k).toBeGreaterThan(0);
    expect(f.peak_rss_bytes).toBeLessThan(2 ** 30);
    expect(f.total_ms).toBeCloseTo(8 * f.step_ms, -1);
    // a larger batch costs more activation memory; a compressed model fewer weight bytes
    const big = (await admin.post('/v1/jobs?dry_run=true', { ...body, hyperparameters: { max_steps: 8, batch_size: 32, max_length: 64 } }))
      .body.plan;
    expect(big.forecast.activation_bytes).toBeGreaterThan(f.activation_bytes);
    const comp = (
      await admin.post('/v1/jobs?dry_run=true', {
        ...body,
        method: { type: 'edge_llm', edge_llm: { compression: { target_sparsity: 0.5, avg_bits: 4 } } },
      })
    ).body;
    expect(comp.method.edge_llm.compression).toEqual({
      target_sparsity: 0.5,
      avg_bits: 4,
      method: 'wanda',
      sparsity_rule: 'owl',
      bits_rule: 'budgeted',
      group_size: 0,
    });
    expect(comp.plan).toMatchObject({ storage: ['int4', 'int4', 'int4', 'int4'], policy: { id: null, source: 'estimated' } });
    expect(comp.plan.forecast.weight_bytes).toBeLessThan(f.weight_bytes);
    // a dry run that does not fit still answers 200, with the reason
    const tight = await admin.post('/v1/jobs?dry_run=true', { ...body, device: { memory_budget_bytes: 1024 } });
    expect(tight.status).toBe(200);
    expect(tight.body.plan).toMatchObject({ fits: false, reason: expect.stringContaining('MiB') });
    // the usual checks apply, and an Idempotency-Key does not store anything for a dry run
    expectProblem(await admin.post('/v1/jobs?dry_run=true', { ...body, model: 'gpt-5' }), 400, 'model_not_found');
    expect((await admin.post('/v1/jobs?dry_run=true', body, { 'idempotency-key': 'dry-1' })).status).toBe(200);
    expectProblem(await admin.post('/v1/jobs?dry_run=maybe', body), 400, 'invalid_request');
    expect((await admin.get('/v1/jobs?limit=100')).body.data.length).toBe(before.jobs);
    expect(await q.count()).toBe(before.queue);
    expect((await admin.post('/v1/jobs', body, { 'idempotency-key': 'dry-1' })).status).toBe(201); // the key was not taken
  });

  it('dry run of the other methods: lora plans one window, rag no training; a time budget bounds the forecast', async () => {
    const body = {
      model: 'tiny-llama',
      training_file: train,
      validation_file: val,
      hyperparameters: { max_steps: 8, batch_size: 8, max_length: 64 },
      device: { memory_budget_bytes: 2 ** 30, threads: 2 },
    };
    const lora = (await admin.post('/v1/jobs?dry_run=true', { ...body, method: { type: 'rag_lora', rag: { k: 3 } } })).body;
    expect(lora).toMatchObject({
      total_steps: 8,
      method: { type: 'rag_lora', rag: { k: 3, context_share: 0.6 } },
      hyperparameters: { time_budget_s: null, early_stopping: null, eval_steps: null },
      plan: { fits: true, exit_layers: [3], window_depth: 4, time_budget: null },
    });
    expect(lora.method.edge_llm).toBeUndefined();
    const rag = (await admin.post('/v1/jobs?dry_run=true', { ...body, method: { type: 'rag' } })).body;
    expect(rag).toMatchObject({
      total_steps: 0,
      method: { type: 'rag', rag: { k: 2, context_share: 0.6 } },
      hyperparameters: { max_steps: 8 },
    });
    expect(rag.plan).toMatchObject({ fits: true, exit_layers: [3], forecast: { trainable_bytes: 0, total_ms: 0 } });
    expect(rag.plan.forecast.peak_tf_bytes).toBeLessThan(lora.plan.forecast.peak_tf_bytes);
    const budget = (lora.plan.forecast.step_ms * 3.5) / 1000;
    const timed = (
      await admin.post('/v1/jobs?dry_run=true', {
        ...body,
        method: { type: 'lora' },
        hyperparameters: { ...body.hyperparameters, time_budget_s: budget, early_stopping: { patience: 2, min_delta: 0.01 } },
      })
    ).body;
    expect(timed.hyperparameters).toMatchObject({ time_budget_s: budget, early_stopping: { patience: 2, min_delta: 0.01 }, eval_steps: 1 });
    expect(timed.plan.time_budget).toEqual({ seconds: budget, steps: 3, stops_run: true });
    expect(timed.plan.forecast.total_ms).toBe(Math.round(budget * 1000));
  });

  it('a rag job has no PEFT adapter (404 adapter_format_unavailable); its bundle waits for success like any other', async () => {
    const r = await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: train, validation_file: val, method: { type: 'rag' } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ method: { type: 'rag' }, progress: { step: 0, total_steps: 0, percent: 0 } });
    const peft = await admin.get(`/v1/jobs/${r.body.id}/adapter?format=peft`);
    expectProblem(peft, 404, 'adapter_format_unavailable');
    expect(peft.body.detail).toMatch(/format=bundle/);
    expectProblem(await admin.get(`/v1/jobs/${r.body.id}/adapter?format=bundle`), 409, 'adapter_not_ready');
    await admin.post(`/v1/jobs/${r.body.id}/cancel`);
  });

  it('a job whose plan cannot fit its memory budget is refused (422 plan_does_not_fit, forecast in the body) and nothing is queued', async () => {
    const before = { jobs: (await admin.get('/v1/jobs?limit=100')).body.data.length, queue: await q.count() };
    const r = await admin.post('/v1/jobs', {
      model: 'tiny-llama',
      training_file: train,
      hyperparameters: { max_steps: 8 },
      device: { memory_budget_bytes: 64 * 2 ** 20 },
    });
    expectProblem(r, 422, 'plan_does_not_fit');
    expect(r.body.param).toBe('device.memory_budget_bytes');
    expect(r.body.detail).toMatch(/needs about \d+ MiB of memory \(peak RSS\), has 64 MiB \(the memory budget\)/);
    expect(r.body.plan).toMatchObject({
      source: 'api',
      fits: false,
      device: { memory_budget_bytes: 64 * 2 ** 20 },
      forecast: { peak_rss_bytes: expect.any(Number) },
    });
    expect(r.body.plan.forecast.peak_rss_bytes).toBeGreaterThan(64 * 2 ** 20);
    expect((await admin.get('/v1/jobs?limit=100')).body.data.length).toBe(before.jobs);
    expect(await q.count()).toBe(before.queue);
  });

  it('a created job records its compression budget, device and the API plan', async () => {
    const r = await admin.post('/v1/jobs', {
      model: 'deep-llama',
      training_file: train,
      hyperparameters: { max_steps: 8, batch_size: 4 },
      device: { memory_budget_bytes: 2 ** 31 },
      method: {
        type: 'edge_llm',
        edge_llm: { compression: { target_sparsity: 0.3, avg_bits: 6, method: 'sparsegpt', sparsity_rule: 'owl', group_size: 32 } },
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      status: 'queued',
      device: { memory_budget_bytes: 2 ** 31, threads: null },
      policy_id: null,
      method: {
        edge_llm: {
          compression: {
            target_sparsity: 0.3,
            avg_bits: 6,
            method: 'sparsegpt',
            sparsity_rule: 'owl',
            bits_rule: 'budgeted',
            group_size: 32,
          },
        },
      },
      plan: {
        source: 'api',
        fits: true,
        policy: { id: null, source: 'estimated' },
        measured: null,
        device: { memory_budget_bytes: 2 ** 31 },
      },
    });
    // budgeted 6 bits over 8 layers: half the layers stored as int8, half as int4
    expect([...r.body.plan.storage].sort()).toEqual(['int4', 'int4', 'int4', 'int4', 'int8', 'int8', 'int8', 'int8']);
    expect((await admin.get(`/v1/jobs/${r.body.id}`)).body.plan).toEqual(r.body.plan);
    // without a device: planned for the configured/local default, echoed as null
    const d = await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } });
    expect(d.body).toMatchObject({ device: null, method: { edge_llm: { compression: null } }, plan: { fits: true, policy: null } });
    expect(d.body.plan.device.memory_budget_bytes).toBeGreaterThan(0);
    for (const id of [r.body.id, d.body.id]) await admin.post(`/v1/jobs/${id}/cancel`);
  });

  it('validates compression and device fields (400 listing each bad field)', async () => {
    const base = { model: 'tiny-llama', training_file: train, hyperparameters: { max_steps: 8 } };
    const r = await admin.post('/v1/jobs', {
      ...base,
      method: {
        type: 'edge_llm',
        edge_llm: {
          compression: {
            target_sparsity: 1.5,
            avg_bits: 1,
            method: 'magnitude',
            sparsity_rule: 'random',
            bits_rule: 'max',
            group_size: -1,
            extra: 1,
          },
        },
      },
      device: { memory_budget_bytes: 0, threads: 0, gpu: true },
    });
    expectProblem(r, 400, 'invalid_request');
    const p = 'method.edge_llm.compression';
    expect(r.body.errors.map((e: any) => e.param).sort()).toEqual(
      [
        `${p}.avg_bits`,
        `${p}.bits_rule`,
        `${p}.extra`,
        `${p}.group_size`,
        `${p}.method`,
        `${p}.sparsity_rule`,
        `${p}.target_sparsity`,
        'device.gpu',
        'device.memory_budget_bytes',
        'device.threads',
      ].sort(),
    );
    const missing = await admin.post('/v1/jobs', {
      ...base,
      method: { type: 'edge_llm', edge_llm: { compression: { target_sparsity: 0.5 } } },
    });
    expectProblem(missing, 400, 'invalid_request');
    expect(missing.body.errors.map((e: any) => e.param)).toEqual([`${p}.avg_bits`]);
    expectProblem(
      await admin.post('/v1/jobs', {
        ...base,
        method: { type: 'edge_llm', edge_llm: { compression: { target_sparsity: '0.5', avg_bits: 4 } } },
      }),
      400,
      'invalid_request',
    );
    // uniform bits need a bit-width the quantizer stores
    const uni = await admin.post('/v1/jobs', {
      ...base,
      method: { type: 'edge_llm', edge_llm: { compression: { target_sparsity: 0.5, avg_bits: 6, bits_rule: 'uniform' } } },
    });
    expectProblem(uni, 400, 'invalid_compression');
    expect(uni.body.param).toBe(`${p}.avg_bits`);
    // dry runs validate the same way
    expectProblem(await admin.post('/v1/jobs?dry_run=true', { ...base, device: { threads: 0 } }), 400, 'invalid_request');
  });

  it('policies: empty list, 404 for an unknown id, model filter, cursors; stored policies with their arrays and usage', async () => {
    expect((await admin.get('/v1/policies')).body).toEqual({ object: 'list', data: [], has_more: false, first_id: null, last_id: null });
    expectProblem(await admin.get('/v1/policies/pol_nope'), 404, 'policy_not_found');
    expectProblem(await admin.get('/v1/policies?after=pol_nope'), 400, 'invalid_cursor');
    expectProblem(await admin.withKey(null).get('/v1/policies'), 401, 'missing_api_key');
    // policies are written by workers; store two the way a worker does
    const { createPrisma, storePolicy } = await import('../../packages/store/src/index.js');
    const { modelFingerprint } = await import('../../packages/core/src/index.js');
    const db = createPrisma(t.databaseUrl, { max: 2 });
    // policies belong to a model's weights: the worker that profiled it stores its copy's fingerprint
    const fingerprint = (await modelFingerprint(join(t.modelsDir, 'tiny-llama')))!;
    const deepFingerprint = (await modelFingerprint(join(t.modelsDir, 'deep-llama')))!;
    try {
      const budget = {
        target_sparsity: 0.5,
        avg_bits: 4,
        method: 'wanda',
        sparsity_rule: 'owl',
        bits_rule: 'budgeted',
        group_size: 0,
      } as const;
      const policy = {
        sparsity: [0.3, 0.5, 0.6, 0.6],
        bits: [8, 4, 2, 2],
        targetSparsity: 0.5,
        avgBits: 4,
        sparsityRule: 'owl',
        bitsRule: 'budgeted',
        pruneSensitivity: [0.4, 0.2, 0.1, 0.1],
        quantSensitivity: [0.02, 0.01, 0.01, 0.005],
      } as const;
      const sensitivity = {
        method: 'wanda',
        sparsities: [0.5],
        bits: [4],
        groupSize: 0,
        denseLoss: 5.9,
        ms: 1200,
        layers: [0, 1, 2, 3].map((l) => ({ layer: l, pruneNmse: [0.1], pruneDloss: [0.01], quantNmse: [0.02], quantDloss: [NaN] })),
        calibration: {
          description: '8 x 128 tokens: the first training examples of training file file_x, concatenated',
          sequences: 8,
          seqLen: 128,
          tokens: 1024,
        },
      };
      const a = await storePolicy(db, {
        modelId: 'tiny-llama',
        fingerprint,
        compression: budget,
        policy: {
          ...policy,
          sparsity: [...policy.sparsity],
          bits: [...policy.bits],
          pruneSensitivity: [...policy.pruneSensitivity],
          quantSensitivity: [...policy.quantSensitivity],
        },
        sensitivity,
        jobId: null,
      });
      const b = await storePolicy(db, {
        modelId: 'deep-llama',
        fingerprint: deepFingerprint,
        compression: budget,
        policy: {
          ...policy,
          sparsity: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
          bits: [4, 4, 4, 4, 4, 4, 4, 4],
          pruneSensitivity: new Array(8).fill(0.1),
          quantSensitivity: new Array(8).fill(0.1),
        },
        sensitivity: null,
        jobId: null,
      });
      expect([a.created, b.created]).toEqual([true, true]);
      const list = (await admin.get('/v1/policies')).body;
      expect(list.data.map((x: any) => x.id)).toEqual([b.row.id, a.row.id]);
      expect((await admin.get('/v1/policies?model=tiny-llama')).body.data.map((x: any) => x.id)).toEqual([a.row.id]);
      expect((await admin.get('/v1/policies?model=other')).body.data).toEqual([]);
      const page = (await admin.get(`/v1/policies?limit=1&after=${b.row.id}`)).body;
      expect(page).toMatchObject({ data: [{ id: a.row.id }], has_more: false });
      const got = (await user.get(`/v1/policies/${a.row.id}`)).body; // global: any project reads it
      expect(got).toMatchObject({
        id: a.row.id,
        object: 'policy',
        model: 'tiny-llama',
        model_fingerprint: fingerprint,
        budget,
        n_layers: 4,
        sparsity: [0.3, 0.5, 0.6, 0.6],
        bits: [8, 4, 2, 2],
        mean_sparsity: 0.5,
        mean_bits: 4,
        sensitivity: {
          prune: [0.4, 0.2, 0.1, 0.1],
          quant: [0.02, 0.01, 0.01, 0.005],
          profile: { method: 'wanda', dense_loss: 5.9, layers: expect.any(Array) },
        },
        // no job of this project profiled it: the calibration data is not named
        calibration: { description: expect.not.stringContaining('file_x'), sequences: 8, seq_len: 128, tokens: 1024 },
        job_count: 0,
      });
      expect(got.sensitivity.profile.layers[0]).toEqual({
        layer: 0,
        prune_nmse: [0.1],
        prune_dloss: [0.01],
        quant_nmse: [0.02],
        quant_dloss: [null],
      });
      // a job with a stored budget is planned with that policy's bits
      const dryBody = {
        model: 'tiny-llama',
        training_file: train,
        hyperparameters: { max_steps: 8 },
        method: { type: 'edge_llm', edge_llm: { compression: { target_sparsity: 0.5, avg_bits: 4 } } },
      };
      const dry = (await admin.post('/v1/jobs?dry_run=true', dryBody)).body;
      expect(dry).toMatchObject({
        policy_id: a.row.id,
        plan: { storage: ['int8', 'int4', 'int4', 'int4'], policy: { id: a.row.id, source: 'stored' } },
      });
      // the API's copy of the model gets other weights (same shapes): that policy is not theirs; restored, it is again
      fakeModel(join(t.modelsDir, 'tiny-llama'), { weights: 'weights v2' });
      expect((await admin.post('/v1/jobs?dry_run=true', dryBody)).body).toMatchObject({
        policy_id: null,
        plan: { storage: ['int4', 'int4', 'int4', 'int4'], policy: { id: null, source: 'estimated' } },
      });
      fakeModel(join(t.modelsDir, 'tiny-llama'), { weights: 'weights v1' });
      expect((await admin.post('/v1/jobs?dry_run=true', dryBody)).body).toMatchObject({
        policy_id: a.row.id,
        plan: { policy: { id: a.row.id, source: 'stored' } },
      });
      // storing the same budget again (a racing job) keeps the first row
      const again = await storePolicy(db, {
        modelId: 'tiny-llama',
        fingerprint,
        compression: budget,
        policy: {
          ...policy,
          sparsity: [0.5, 0.5, 0.5, 0.5],
          bits: [4, 4, 4, 4],
          pruneSensitivity: [1, 1, 1, 1],
          quantSensitivity: [1, 1, 1, 1],
        },
        sensitivity: null,
        jobId: null,
      });
      expect(again).toMatchObject({ created: false, row: { id: a.row.id, sparsity: [0.3, 0.5, 0.6, 0.6] } });
      expect((await admin.get('/v1/policies')).body.data).toHaveLength(2);
      // two jobs racing to store a new budget's policy: one row, both get it
      const other = { ...budget, target_sparsity: 0.4 };
      const race = await Promise.all(
        [0.1, 0.2, 0.3].map((x) =>
          storePolicy(db, {
            modelId: 'tiny-llama',
            fingerprint,
            compression: other,
            policy: {
              ...policy,
              sparsity: [x, x, x, x],
              bits: [4, 4, 4, 4],
              pruneSensitivity: [1, 1, 1, 1],
              quantSensitivity: [1, 1, 1, 1],
            },
            sensitivity: null,
            jobId: null,
          }),
        ),
      );
      expect(race.filter((x) => x.created)).toHaveLength(1);
      expect(new Set(race.map((x) => x.row.id)).size).toBe(1);
      expect((await admin.get('/v1/policies?model=tiny-llama')).body.data).toHaveLength(2);
    } finally {
      await db.$disconnect();
    }
  });

  it('refuses to delete a file a live job uses (409)', async () => {
    const f = (await admin.upload(goodJsonl(10))).body.id;
    const j = (await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: f, hyperparameters: { max_steps: 8 } })).body;
    expectProblem(await admin.delete(`/v1/files/${f}`), 409, 'file_in_use');
    await admin.post(`/v1/jobs/${j.id}/cancel`);
    expect((await admin.delete(`/v1/files/${f}`)).status).toBe(200);
  });
});

describe('isolation', () => {
  it('the API (with the planner and model config it takes from the engine) loads no TF.js', () => {
    // a resolve hook that fails on any @tensorflow module, then the API's entry point (sources, through tsx)
    const hook =
      'export async function resolve(s, c, next) { const r = await next(s, c); if (/@tensorflow/.test(r.url)) throw new Error("TF.js loaded: " + r.url + " from " + c.parentURL); return r; }';
    const script =
      `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));` +
      `await import(${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'apps', 'api', 'src', 'index.ts')).href)}); console.log('loaded');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/TF\.js loaded/);
    expect(r.stdout.trim()).toBe('loaded');
  });
});

describe('errors', () => {
  it('unknown routes and methods answer problem+json', async () => {
    expectProblem(await admin.get('/v1/nothing'), 404, 'route_not_found');
    expectProblem(await admin.withKey(null).get('/nothing'), 404, 'route_not_found');
  });
});
