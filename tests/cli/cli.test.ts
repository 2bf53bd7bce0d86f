// The `edgetune` command (apps/cli, built) against a real API in this process (own database and queue
// prefix, no worker): files, jobs (plan, create, list, get, cancel, watch of a job cancelled meanwhile),
// models, workers, keys; --json output; one-line errors with exit codes; "did you mean" for typos.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ADMIN_KEY, Client, createTestEnv, fakeModel, startTestApi, type TestEnv } from '../helpers/service.js';
import { edgetune } from './run.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let env: NodeJS.ProcessEnv;
let train: string;
let jobArgs: string[];
/** A local port nothing listens on (one the OS just handed out and took back). */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => edgetune(args, { ...env, ...extra });

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  api = await startTestApi(t);
  env = { EDGETUNE_API_URL: api.url, EDGETUNE_API_KEY: ADMIN_KEY };
  const lines = Array.from({ length: 12 }, (_, i) =>
    JSON.stringify({ prompt: `mail ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' }),
  );
  writeFileSync(join(t.dir, 'train.jsonl'), `${lines.join('\n')}\n`);
  const up = await cli(['files', 'upload', join(t.dir, 'train.jsonl'), '-q']);
  expect(up.code, up.stderr).toBe(0);
  train = up.stdout.trim();
  jobArgs = ['--model', 'tiny-llama', '--training-file', train, '--max-steps', '8', '--exit-layers', '1,3'];
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

describe('files', () => {
  it('upload prints the id; list shows it as a table and as JSON', async () => {
    expect(train).toMatch(/^file_/);
    const human = await cli(['files', 'list']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^ID\s+FILENAME\s+RECORDS/);
    expect(human.stdout).toMatch(new RegExp(`${train}\\s+train\\.jsonl\\s+12`));
    const json = JSON.parse((await cli(['files', 'list', '--json'])).stdout);
    expect(json.object).toBe('list');
    expect(json.data[0]).toMatchObject({ id: train, filename: 'train.jsonl', records: 12, created_at: expect.any(Number) });
  });

  it('an invalid file: exit 1, one line naming the problem and the line', async () => {
    writeFileSync(join(t.dir, 'bad.jsonl'), '{"prompt": "a", "completion": " b"}\n{oops\n');
    const r = await cli(['files', 'upload', join(t.dir, 'bad.jsonl')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^edgetune: EdgetuneApiError: .*line 2.*\(422 /);
  });
});

describe('jobs', () => {
  it('plan prints the forecast against the budget, time, exits and window; --json is the API object', async () => {
    const r = await cli(['jobs', 'plan', ...jobArgs, '--memory-budget-mb', '512']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^model:\s+tiny-llama, method edge_llm/m);
    expect(r.stdout).toMatch(/^training:\s+12 records, 8 steps/m);
    expect(r.stdout).toMatch(/^fits:\s+yes/m);
    expect(r.stdout).toMatch(/^memory:\s+peak RSS [\d.]+ [KMG]iB of a 512\.0 MiB budget \([\d.]+% of it\)/m);
    expect(r.stdout).toMatch(/^time:\s+\d+ ms\/step, \S+ in all/m);
    expect(r.stdout).toMatch(/^exits:\s+1, 3/m);
    expect(r.stdout).toMatch(/^window:\s+\d+ layers? deep; micro-batch \d+/m);
    const j = JSON.parse((await cli(['jobs', 'plan', ...jobArgs, '--json'])).stdout);
    expect(j).toMatchObject({
      object: 'job.plan',
      total_steps: 8,
      plan: { exit_layers: [1, 3], forecast: { peak_rss_bytes: expect.any(Number) } },
    });
  });

  it('create, get, list, cancel; watch of a finished job exits 1 when it was cancelled', async () => {
    const c = await cli(['jobs', 'create', ...jobArgs, '-q']);
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    expect(id).toMatch(/^ftjob_/);
    const got = JSON.parse((await cli(['jobs', 'get', id, '--json'])).stdout);
    expect(got).toMatchObject({ id, object: 'fine_tuning.job', status: 'queued', model: 'tiny-llama', training_file: train });
    expect(got.hyperparameters.max_steps ?? got.progress.total_steps).toBe(8);
    const human = await cli(['jobs', 'get', id]);
    expect(human.stdout).toMatch(/^status:\s+queued$/m);
    expect((await cli(['jobs', 'list'])).stdout).toMatch(new RegExp(`^${id}\\s+queued\\s+tiny-llama\\s+edge_llm`, 'm'));
    const cancel = await cli(['jobs', 'cancel', id]);
    expect(cancel.stdout.trim()).toBe(`${id}: cancelled`);
    const w = await cli(['jobs', 'watch', id]);
    expect(w.code).toBe(1);
    expect(w.stdout).toMatch(/^status:\s+cancelled$/m);
  });

  it('watch follows a queued job over SSE and exits 1 once it is cancelled meanwhile; --json prints events as lines', async () => {
    const id = (await cli(['jobs', 'create', ...jobArgs, '-q'])).stdout.trim();
    const watching = cli(['jobs', 'watch', id, '--json']);
    const admin = new Client(api.url);
    // the watcher's stream is open once the API has a follower; a short wait is enough here
    await new Promise((r) => setTimeout(r, 1500));
    expect((await admin.post(`/v1/jobs/${id}/cancel`)).status).toBe(200);
    const w = await watching;
    expect(w.code, w.stderr).toBe(1);
    const lines = w.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.slice(0, -1).every((e) => e.object === 'fine_tuning.job.event')).toBe(true);
    expect(lines.some((e) => e.type === 'status' && e.data?.status === 'cancelled')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ id, object: 'fine_tuning.job', status: 'cancelled' });
  });

  it('--body FILE gives the request and the options override it', async () => {
    const body = join(t.dir, 'job.json');
    writeFileSync(body, JSON.stringify({ model: 'nope', training_file: train, hyperparameters: { max_steps: 9, batch_size: 2 } }));
    const r = await cli(['jobs', 'plan', '--body', body, '--model', 'tiny-llama', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ model: 'tiny-llama', total_steps: 9, hyperparameters: { batch_size: 2 } });
  });

  it('adapters download before success: exit 1 with the 409 in one line', async () => {
    const id = (await cli(['jobs', 'create', ...jobArgs, '-q'])).stdout.trim();
    const r = await cli(['adapters', 'download', id, '--out', join(t.dir, 'a.tar')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/\(409 /);
    await cli(['jobs', 'cancel', id]);
  });
});

describe('models, workers, keys', () => {
  it('models list and workers list', async () => {
    const m = await cli(['models', 'list']);
    expect(m.stdout).toMatch(/^ID\s+FAMILY\s+PARAMS\s+LAYERS/);
    expect(m.stdout).toMatch(/^tiny-llama\s+llama\s+[\d.]+M\s+4\s/m);
    expect(JSON.parse((await cli(['models', 'list', '--json'])).stdout).data.map((x: any) => x.id)).toContain('tiny-llama');
    const w = await cli(['workers', 'list']);
    expect([w.code, w.stdout.trim()]).toEqual([0, '(none)']);
  });

  it('keys create in the default project prints a secret that works; an unknown project is a usage error', async () => {
    const k = await cli(['keys', 'create', '--name', 'laptop', '-q']);
    expect(k.code, k.stderr).toBe(0);
    const secret = k.stdout.trim();
    expect(secret).toMatch(/^et-/);
    expect((await cli(['files', 'list', '--json'], { EDGETUNE_API_KEY: secret })).code).toBe(0);
    const json = JSON.parse((await cli(['keys', 'create', '--name', 'ci', '--json'])).stdout);
    expect(json).toMatchObject({ object: 'api_key', name: 'ci', admin: false, secret: expect.stringMatching(/^et-/) });
    const bad = await cli(['keys', 'create', '--name', 'x', '--project', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^edgetune: no project named "nope"/);
  });
});

describe('errors', () => {
  it('a bad key: exit 1, one line with the code, no stack trace', async () => {
    const r = await cli(['jobs', 'list'], { EDGETUNE_API_KEY: 'et-wrong' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^edgetune: EdgetuneApiError: .*\(401 invalid_api_key\)\n$/);
    const flag = await cli(['models', 'list', '--api-key', 'et-wrong']);
    expect(flag.stderr).toMatch(/401 invalid_api_key/);
  });

  it('no API URL or key, an unreachable API', async () => {
    const noUrl = await cli(['models', 'list'], { EDGETUNE_API_URL: '' });
    expect([noUrl.code, noUrl.stderr.split('\n')[0]]).toEqual([
      2,
      'edgetune: no API URL: pass --api-url or set EDGETUNE_API_URL (e.g. http://localhost:8080)',
    ]);
    const port = await closedPort();
    const gone = await cli(['models', 'list', '--api-url', `http://127.0.0.1:${port}`]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe(`edgetune: EdgetuneConnectionError: cannot reach http://127.0.0.1:${port}/v1/models: ECONNREFUSED\n`);
  });

  it('unknown commands and options suggest the nearest known one (exit 2)', async () => {
    const opt = await cli(['jobs', 'create', '--modle', 'tiny-llama']);
    expect(opt.code).toBe(2);
    expect(opt.stderr.split('\n')[0]).toBe('edgetune: unknown option --modle (did you mean --model?)');
    expect((await cli(['jbos', 'list'])).stderr.split('\n')[0]).toBe('edgetune: unknown command "jbos" (did you mean jobs?)');
    expect((await cli(['jobs', 'lst'])).stderr.split('\n')[0]).toBe('edgetune: unknown jobs command "lst" (did you mean list?)');
    const missing = await cli(['jobs', 'get']);
    expect([missing.code, missing.stderr.split('\n')[0]]).toEqual([2, 'edgetune: jobs get needs JOB_ID']);
    const value = await cli(['adapters', 'download', 'ftjob_x', '--format', 'zip']);
    expect(value.stderr.split('\n')[0]).toBe('edgetune: --format must be one of peft, bundle, got "zip"');
  });

  it('--help lists the commands; a command --help its options', async () => {
    const h = await cli(['--help']);
    expect(h.code).toBe(0);
    for (const c of ['files upload', 'jobs watch', 'jobs plan', 'adapters download', 'models list', 'workers list', 'keys create'])
      expect(h.stdout).toContain(c);
    expect((await cli(['jobs', 'create', '--help'])).stdout).toMatch(/^usage: edgetune jobs create --model ID --training-file FILE_ID/);
  });
});
