// The advisor's `measure` mode end to end with a real worker (a child process running the engine) against real
// PostgreSQL and Redis: rules fitted to synthetic guidelines-bench rows (EDGETUNE_ADVISOR_RULES points at them),
// a measure recommendation whose probe jobs (edge_llm, lora, rag) run to the end, the probes ranked by the
// validation metric their jobs measured, and the best candidate's job started and run.
import { syntheticRows } from '../helpers/advisor-rows.js';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { fitAdvisorRules, type GuidelinesRun } from '../../packages/core/src/advisor/rules.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import {
  Client,
  createTestEnv,
  spawnWorker,
  startTestApi,
  stopWorker,
  waitFor,
  type TestEnv,
  type WorkerProcess,
} from '../helpers/service.js';

const MODEL = 'tiny-llama';
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let c: Client;
let w: WorkerProcess;
let train: string, val: string;

const job = async (id: string) => (await c.get(`/v1/jobs/${id}`)).body;

const rows = (): GuidelinesRun[] =>
  syntheticRows({ model: `models/${MODEL}`, task: 'toy', gains: { edge_llm: 0.6, lora: 0.4, rag: 0.2 }, peaks: [4, 6], maxSteps: 12 });

beforeAll(async () => {
  await initBackend({ quiet: true });
  t = await createTestEnv({ setupModels: (d) => createTinyModel(join(d, MODEL), { layers: 4 }) });
  const rulesPath = join(t.dir, 'advisor-rules.json');
  writeFileSync(rulesPath, JSON.stringify(fitAdvisorRules(rows(), 'synthetic rows')));
  t.env.EDGETUNE_ADVISOR_RULES = rulesPath;
  writeToyTask(join(t.dir, 'train.jsonl'), 24, 1);
  writeToyTask(join(t.dir, 'val.jsonl'), 12, 2);
  api = await startTestApi(t);
  c = new Client(api.url);
  train = (await c.upload(readFileSync(join(t.dir, 'train.jsonl')), 'train.jsonl')).body.id;
  val = (await c.upload(readFileSync(join(t.dir, 'val.jsonl')), 'val.jsonl')).body.id;
  w = spawnWorker(t, 'w-advisor');
});

afterAll(async () => {
  if (w) await stopWorker(w);
  await api?.stop();
  await t?.destroy();
});

describe('measure recommendations with a worker', () => {
  it('probe jobs run to the end, are ranked by their measured validation metric, and the best candidate starts and runs', async () => {
    await waitFor(
      async () => (await c.get('/v1/workers')).body.data.some((x: any) => x.host === 'w-advisor' && x.online),
      30_000,
      'worker',
    );
    const created = await c.post('/v1/recommendations', {
      training_file: train,
      validation_file: val,
      time_budget_s: 15,
      mode: 'measure',
      models: [MODEL],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const rec = created.body;
    expect(rec.status).toBe('measuring');
    expect(rec.candidates.map((x: any) => x.method)).toEqual(['edge_llm', 'lora', 'rag']);
    // few steps: what validation peaked at on the bench for 24 examples
    for (const x of rec.candidates.filter((x: any) => x.method !== 'rag')) expect(x.steps).toBeLessThanOrEqual(6);
    expect(rec.probes.map((p: any) => p.candidate)).toEqual([0, 1, 2]);

    const done = await waitFor(
      async () => {
        const r = (await c.get(`/v1/recommendations/${rec.id}`)).body;
        return r.status !== 'measuring' && r;
      },
      90_000,
      'the probes',
    );
    expect(done.status, JSON.stringify(done.probes) + w.log().slice(-3000)).toBe('succeeded');
    expect(done.probes).toHaveLength(3);

    for (const p of done.probes) {
      const j = await job(p.job_id);
      expect(j.status, JSON.stringify(j.error)).toBe('succeeded');
      expect(p).toMatchObject({ status: 'succeeded', error: null });
      expect(j.metadata).toMatchObject({ recommendation_id: rec.id, recommendation_candidate: String(p.candidate) });
      expect(j.method.type).toBe(rec.candidates[p.candidate].method);
      expect(j.hyperparameters.time_budget_s).toBe(5);
      expect(j.result.validation_examples).toBe(12);
      if (j.method.type === 'rag') {
        // trains nothing: no curve and no vote; its one path's validation accuracy is what it measured
        expect(j.result).toMatchObject({ steps: 0, validation_curve: [], voting_rule: null, voted_accuracy: null });
        expect(j.result.exits).toHaveLength(1);
        expect(p.measured).toEqual({ metric: 'accuracy', value: j.result.exits[0].accuracy });
      } else {
        // the voted accuracy of the weights it kept, on the validation file
        expect(p.measured).toEqual({ metric: 'accuracy', value: j.result.voted_accuracy });
        expect(j.hyperparameters.early_stopping).toEqual({ patience: 3, min_delta: 0 });
        expect(j.result.steps).toBeGreaterThan(0);
        expect(j.result.validation_curve.length).toBeGreaterThan(0);
        expect(j.result.best_step).toEqual(expect.any(Number));
      }
    }
    const values = done.probes.map((p: any) => p.measured.value);
    expect(values).toEqual([...values].sort((a, b) => b - a));
    expect(done.best_candidate).toBe(done.probes[0].candidate);

    // start without a candidate: the best measured one, with the candidate's job settings
    const started = await c.post(`/v1/recommendations/${rec.id}/start`, {});
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const best = rec.candidates[done.best_candidate];
    // what the job resolves: `auto` exit layers to the plan's, `auto` eval_steps to a step count
    const { eval_steps, ...hyperparameters } = best.job.hyperparameters;
    const method = best.job.method.edge_llm
      ? { ...best.job.method, edge_llm: { ...best.job.method.edge_llm, exit_layers: started.body.plan.exit_layers } }
      : best.job.method;
    expect(started.body).toMatchObject({
      model: best.job.model,
      training_file: train,
      validation_file: val,
      method,
      hyperparameters: { ...hyperparameters, ...(eval_steps === 'auto' ? { eval_steps: expect.any(Number) } : {}) },
      metadata: { recommendation_id: rec.id, recommendation_candidate: String(done.best_candidate) },
    });
    expect(started.body.hyperparameters.time_budget_s).toBe(15);
    const finished = await waitFor(
      async () => {
        const j = await job(started.body.id);
        return ['succeeded', 'failed', 'cancelled'].includes(j.status) && j;
      },
      60_000,
      'the started job',
    );
    expect(finished.status, JSON.stringify(finished.error) + w.log().slice(-3000)).toBe('succeeded');
    expect(finished.result).toMatchObject({ validation_examples: 12, train_examples: 24 });
    const linked = (await c.get(`/v1/jobs?metadata[recommendation_id]=${rec.id}`)).body.data.map((j: any) => j.id);
    expect(linked.sort()).toEqual([...done.probes.map((p: any) => p.job_id), started.body.id].sort());
    // the started job is no probe: the recommendation still ranks only its probes
    expect((await c.get(`/v1/recommendations/${rec.id}`)).body.probes.map((p: any) => p.job_id)).toEqual(
      done.probes.map((p: any) => p.job_id),
    );
  });
});
