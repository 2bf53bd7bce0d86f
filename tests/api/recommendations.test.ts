// The advisor over HTTP against real PostgreSQL and Redis, without a worker: recommendations from rules fitted to
// synthetic guidelines-bench rows (EDGETUNE_ADVISOR_RULES points at them), the refusal without rules, measure
// mode's probe jobs (created and linked, not run), and starting a candidate's job.
import { syntheticRows } from '../helpers/advisor-rows.js';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { join } from 'node:path';
import { fitAdvisorRules, type GuidelinesRun } from '../../packages/core/src/advisor/rules.js';
import { fakeModel, Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let client: Client;
let train: string, val: string;
let rulesPath: string;

const jsonl = (n: number) =>
  `${Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 4 ? ' ham' : ' spam' })).join('\n')}\n`;

const rows = (): GuidelinesRun[] =>
  syntheticRows({ model: 'models/tiny-llama', task: 'spam', gains: { edge_llm: 0.6, lora: 0.4 }, peaks: [4, 8] });

function expectProblem(r: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status, code });
}

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  rulesPath = join(t.dir, 'advisor-rules.json');
  // the rules file the API reads (not written yet: the first test sees none)
  t.env.EDGETUNE_ADVISOR_RULES = rulesPath;
  api = await startTestApi(t);
  client = new Client(api.url);
  train = (await client.upload(jsonl(16), 'train.jsonl')).body.id;
  val = (await client.upload(jsonl(8), 'val.jsonl')).body.id;
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

const ESTIMATE = () => ({ training_file: train, time_budget_s: 600, mode: 'estimate', device: { memory_budget_bytes: 8 * 2 ** 30 } });

describe('recommendations', () => {
  it('answers 503 advisor_rules_missing without fitted rules', async () => {
    expectProblem(await client.post('/v1/recommendations', ESTIMATE()), 503, 'advisor_rules_missing');
    writeFileSync(rulesPath, JSON.stringify(fitAdvisorRules(rows(), 'synthetic rows')));
  });

  it('estimate: ranks the candidates by the fitted gains at once, each citing its rows', async () => {
    const r = await client.post('/v1/recommendations', ESTIMATE());
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      object: 'recommendation',
      mode: 'estimate',
      status: 'succeeded',
      id: expect.stringMatching(/^rec_/),
      data: { n_train: 16, task_kind: 'classification', majority_share: 0.75 },
      rules_source: 'synthetic rows',
      best_candidate: 0,
      probes: null,
    });
    const c = r.body.candidates;
    expect(c.map((x: any) => x.method)).toEqual(['edge_llm', 'lora']);
    // 0.75 + 0.6 x 0.25
    expect(c[0].expected.value).toBeCloseTo(0.9, 4);
    expect(c[0].rows.length).toBeGreaterThan(0);
    expect(c[0].job).toMatchObject({ model: 'tiny-llama', method: { type: 'edge_llm' }, hyperparameters: { max_steps: 6, lora_r: 4 } });
    // compressed and RAG variants were never measured: left out, with that reason
    expect(r.body.left_out.find((l: any) => l.method === 'rag')).toMatchObject({ code: 'no_bench_rows' });
    expect((await client.get(`/v1/recommendations/${r.body.id}`)).body).toEqual(r.body);
    const list = await client.get('/v1/recommendations');
    expect(list.body.data.map((x: any) => x.id)).toContain(r.body.id);
  });

  it("leaves out candidates that do not fit the memory budget with the planner's reason", async () => {
    const r = await client.post('/v1/recommendations', { ...ESTIMATE(), device: { memory_budget_bytes: 2 ** 20 } });
    expect(r.status).toBe(201);
    expect(r.body.candidates).toEqual([]);
    expect(r.body.left_out.find((l: any) => l.method === 'edge_llm')).toMatchObject({
      code: 'does_not_fit',
      reason: expect.stringMatching(/needs about \d+ MiB of memory/),
    });
    expectProblem(await client.post(`/v1/recommendations/${r.body.id}/start`, {}), 400, 'invalid_candidate');
  });

  it('refuses bad files, unknown models and workers, and measure without a validation file', async () => {
    expectProblem(await client.post('/v1/recommendations', { ...ESTIMATE(), training_file: 'file_nope' }), 400, 'file_not_found');
    expectProblem(await client.post('/v1/recommendations', { ...ESTIMATE(), mode: 'measure' }), 400, 'validation_file_required');
    expectProblem(await client.post('/v1/recommendations', { ...ESTIMATE(), models: ['no-such-model'] }), 400, 'model_not_found');
    expectProblem(await client.post('/v1/recommendations', { ...ESTIMATE(), device: { worker_id: 'box:1' } }), 400, 'worker_not_found');
    expectProblem(await client.post('/v1/recommendations', { ...ESTIMATE(), time_budget_s: 0 }), 400, 'invalid_request');
    expectProblem(await client.get('/v1/recommendations/rec_nope'), 404, 'recommendation_not_found');
  });

  it('measure: creates probe jobs linked to the recommendation, each on its share of the time budget', async () => {
    const r = await client.post('/v1/recommendations', { ...ESTIMATE(), mode: 'measure', validation_file: val });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.status).toBe('measuring');
    expect(r.body.probes).toHaveLength(2);
    for (const p of r.body.probes) {
      expect(p.error, JSON.stringify(p.error)).toBeNull();
      const job = (await client.get(`/v1/jobs/${p.job_id}`)).body;
      expect(job.status).toBe('queued');
      expect(job.metadata).toMatchObject({ recommendation_id: r.body.id, recommendation_candidate: String(p.candidate) });
      expect(job.method.type).toBe(r.body.candidates[p.candidate].method);
      expect(job.validation_file).toBe(val);
      expect(job.hyperparameters).toMatchObject({ time_budget_s: 300, early_stopping: { patience: 3 } });
    }
    const linked = await client.get(`/v1/jobs?metadata[recommendation_id]=${r.body.id}`);
    expect(linked.body.data).toHaveLength(2);

    // the probes finish as a worker would record them: the second one measured better, the first failed
    const [first, second] = r.body.probes;
    const db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    try {
      await db.query(`UPDATE jobs SET status = 'failed', error = $2 WHERE id = $1`, [
        first.job_id,
        { code: 'out_of_memory', message: 'the worker ran out of memory', param: null },
      ]);
      await db.query(`UPDATE jobs SET status = 'succeeded', result = $2 WHERE id = $1`, [second.job_id, { voted_accuracy: 0.875 }]);
    } finally {
      await db.end();
    }
    const done = (await client.get(`/v1/recommendations/${r.body.id}`)).body;
    expect(done.status).toBe('succeeded');
    expect(done.best_candidate).toBe(second.candidate);
    expect(done.probes).toEqual([
      { ...second, status: 'succeeded', measured: { metric: 'accuracy', value: 0.875 } },
      { ...first, status: 'failed', error: { code: 'out_of_memory', message: 'the worker ran out of memory' } },
    ]);
  });

  it('measure: a probe whose share of the time budget is short of one step per exit window still trains each window once', async () => {
    const edge = (await client.post('/v1/recommendations', ESTIMATE())).body.candidates.find((x: any) => x.method === 'edge_llm');
    const windows = (await client.post('/v1/jobs?dry_run=true', { ...edge.job, training_file: train })).body.plan.exit_layers.length;
    expect(windows).toBeGreaterThan(1);
    // edge_llm and rag (no steps) share the budget: the whole covers 1.5 steps per window, edge_llm's half fewer than its windows
    const edgeRows = rows().filter((x) => x.method === 'edge_llm');
    writeFileSync(
      rulesPath,
      JSON.stringify(
        fitAdvisorRules([...edgeRows, ...edgeRows.map((x) => ({ ...x, method: 'rag' as const, best_step: null }))], 'synthetic rows'),
      ),
    );
    try {
      const r = await client.post('/v1/recommendations', {
        ...ESTIMATE(),
        mode: 'measure',
        validation_file: val,
        time_budget_s: (1.5 * windows * edge.forecast.step_ms) / 1000,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.probes).toHaveLength(2);
      const probe = r.body.probes.find((p: any) => r.body.candidates[p.candidate].method === 'edge_llm');
      expect(probe.error, JSON.stringify(probe.error)).toBeNull();
      expect((await client.get(`/v1/jobs/${probe.job_id}`)).body.hyperparameters.max_steps).toBe(windows);
    } finally {
      writeFileSync(rulesPath, JSON.stringify(fitAdvisorRules(rows(), 'synthetic rows')));
    }
  });

  it("start: creates the candidate's job as POST /v1/jobs would", async () => {
    const rec = (await client.post('/v1/recommendations', ESTIMATE())).body;
    const r = await client.post(`/v1/recommendations/${rec.id}/start`, { candidate: 1 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      object: 'fine_tuning.job',
      status: 'queued',
      model: 'tiny-llama',
      training_file: train,
      method: { type: rec.candidates[1].method },
      hyperparameters: { max_steps: rec.candidates[1].steps, lora_r: 4, time_budget_s: 600 },
      metadata: { recommendation_id: rec.id },
    });
    expect(r.body.plan.fits).toBe(true);
    expectProblem(await client.post(`/v1/recommendations/${rec.id}/start`, { candidate: 9 }), 400, 'invalid_candidate');
  });
});
