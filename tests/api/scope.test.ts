// Admin scope and cross-project disclosure over HTTP against real PostgreSQL and Redis: an admin key administers
// its own project only (another project answers 404 `project_not_found`), the operator key (the bootstrap key)
// every project; a shared policy names the training file it was profiled on only to the project whose job did it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { createPrisma, storePolicy, type PrismaClient } from '../../packages/store/src/index.js';
import { CALIBRATION_ELSEWHERE } from '../../packages/store/src/policies.js';
import { fakeModel, Client, createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let db: PrismaClient;
let operator: Client;
let adminA: Client;
let adminB: Client;
let projectA: string;
let projectB: string;

function expectProblem(r: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status, code });
}

/** A project with an admin key; returns its id and a client with that key. */
async function projectWithAdmin(name: string): Promise<[string, Client]> {
  const p = await operator.post('/v1/projects', { name });
  expect(p.status).toBe(201);
  const k = await operator.post(`/v1/projects/${p.body.id}/keys`, { name: `${name}-admin`, admin: true });
  expect(k.status).toBe(201);
  return [p.body.id, operator.withKey(k.body.secret)];
}

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  api = await startTestApi(t);
  db = createPrisma(t.databaseUrl, { max: 2 });
  operator = new Client(api.url);
  [projectA, adminA] = await projectWithAdmin('team-a');
  [projectB, adminB] = await projectWithAdmin('team-b');
});

afterAll(async () => {
  await db?.$disconnect();
  await api?.stop();
  await t?.destroy();
});

describe('admin scope', () => {
  it('an admin key neither lists, reads the keys of, mints keys for nor revokes keys of another project', async () => {
    const list = await adminA.get('/v1/projects?limit=100');
    expect(list.status).toBe(200);
    expect(list.body.data.map((p: any) => p.id)).toEqual([projectA]);
    expectProblem(await adminA.get(`/v1/projects?after=${projectB}`), 400, 'invalid_cursor');

    expectProblem(await adminA.get(`/v1/projects/${projectB}/keys`), 404, 'project_not_found');
    expectProblem(await adminA.post(`/v1/projects/${projectB}/keys`, { name: 'intruder', admin: true }), 404, 'project_not_found');
    const bKeys = await adminB.get(`/v1/projects/${projectB}/keys`);
    expect(bKeys.status).toBe(200);
    expect(bKeys.body.data.map((k: any) => k.name)).toEqual(['team-b-admin']); // nothing was minted
    expectProblem(await adminA.delete(`/v1/projects/${projectB}/keys/${bKeys.body.data[0].id}`), 404, 'project_not_found');
    expect((await adminB.get('/v1/files')).status).toBe(200); // B's key still works
    // the same answer as for a project that does not exist: A learns nothing about B
    expectProblem(await adminA.get('/v1/projects/proj_nope/keys'), 404, 'project_not_found');
    // creating projects is the operator's
    expectProblem(await adminA.post('/v1/projects', { name: 'team-c' }), 403, 'operator_required');
  });

  it('an admin key administers its own project', async () => {
    const k = await adminA.post(`/v1/projects/${projectA}/keys`, { name: 'a-ci' });
    expect(k.status).toBe(201);
    expect(k.body).toMatchObject({ project_id: projectA, admin: false });
    const keys = await adminA.get(`/v1/projects/${projectA}/keys`);
    expect(keys.body.data.map((x: any) => x.name)).toEqual(['team-a-admin', 'a-ci']);
    expect((await adminA.delete(`/v1/projects/${projectA}/keys/${k.body.id}`)).body.revoked_at).toEqual(expect.any(Number));
  });

  it('the operator key lists every project and mints keys for any', async () => {
    const list = await operator.get('/v1/projects?limit=100');
    expect(list.body.data.map((p: any) => p.id)).toEqual(expect.arrayContaining([projectA, projectB]));
    const k = await operator.post(`/v1/projects/${projectB}/keys`, { name: 'b-ci' });
    expect(k.status).toBe(201);
    expect((await operator.get(`/v1/projects/${projectB}/keys`)).body.data.map((x: any) => x.name)).toContain('b-ci');
    // the operator flag is the bootstrap key's alone
    expect((await db.apiKey.findMany({ where: { operator: true } })).map((x) => x.name)).toEqual(['bootstrap']);
  });
});

describe('policies', () => {
  it("name the training file they were profiled on to the profiling job's project only", async () => {
    const file = await adminA.upload(`${JSON.stringify({ prompt: 'a', completion: ' b' })}\n`);
    expect(file.status).toBe(201);
    // a job of project A that profiled the policy (the row as a worker leaves it)
    const job = await db.job.create({
      data: {
        id: 'ftjob-scope-a',
        projectId: projectA,
        model: 'tiny-llama',
        trainingFile: file.body.id,
        status: 'succeeded',
        method: { type: 'edge_llm' },
        hyperparameters: {},
        checkpointEvery: 10,
        seed: 0,
        metadata: {},
        totalSteps: 10,
      },
    });
    const description = `8 x 128 tokens: the first training examples of training file ${file.body.id}, concatenated`;
    const { row } = await storePolicy(db, {
      modelId: 'tiny-llama',
      fingerprint: 'sha256:scope',
      compression: { target_sparsity: 0.5, avg_bits: 4, method: 'wanda', sparsity_rule: 'owl', bits_rule: 'budgeted', group_size: 0 },
      policy: {
        sparsity: [0.5, 0.5, 0.5, 0.5],
        bits: [4, 4, 4, 4],
        targetSparsity: 0.5,
        avgBits: 4,
        sparsityRule: 'owl',
        bitsRule: 'budgeted',
        pruneSensitivity: [0.1, 0.1, 0.1, 0.1],
        quantSensitivity: [0.1, 0.1, 0.1, 0.1],
      },
      sensitivity: {
        method: 'wanda',
        sparsities: [0.5],
        bits: [4],
        groupSize: 0,
        denseLoss: 5,
        ms: 10,
        layers: [],
        calibration: { description, sequences: 8, seqLen: 128, tokens: 1024 },
      },
      jobId: job.id,
    });
    await db.job.update({ where: { id: job.id }, data: { policyId: row.id } });

    const own = await adminA.get(`/v1/policies/${row.id}`);
    expect(own.body.calibration.description).toBe(description);
    expect(own.body.job_count).toBe(1);
    const other = await adminB.get(`/v1/policies/${row.id}`);
    expect(other.status).toBe(200);
    expect(other.text).not.toContain(file.body.id);
    expect(other.text).not.toContain(job.id);
    expect(other.body.calibration).toEqual({ description: CALIBRATION_ELSEWHERE, sequences: 8, seq_len: 128, tokens: 1024 });
    expect(other.body.job_count).toBe(0);
    const listed = await adminB.get('/v1/policies?model=tiny-llama');
    expect(listed.body.data.map((p: any) => p.id)).toEqual([row.id]);
    expect(listed.text).not.toContain(file.body.id);
    expect((await adminA.get('/v1/policies?model=tiny-llama')).text).toContain(file.body.id);
  });
});
