// Serving tuned models through the OpenAI-compatible endpoints, driven by the official `openai` client
// against the real API (in-process) and a real worker (child process with its sandboxed processors): a job
// created and followed through /v1/fine_tuning/jobs, then completions (plain, streamed, with stop
// sequences), chat completions, label scoring, the errors, and the answer checked against what
// `edgetune-engine infer` gives for the same bundle and prompt; all while the worker tunes another job.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import OpenAI, { toFile } from 'openai';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import {
  ADMIN_KEY,
  REPO_ROOT,
  createTestEnv,
  spawnWorker,
  startTestApi,
  stopWorker,
  waitFor,
  type TestEnv,
  type WorkerProcess,
} from '../helpers/service.js';

const MODEL = 'tiny-llama';
const PROMPT = 'FREE MONEY: whale ship sea captain harpoon voyage\nAnswer:';
let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let w: WorkerProcess;
let client: OpenAI;
let jobId: string;
let ftModel: string;
let bundleDir: string;
let busyJobId: string;

/** `edgetune-engine infer` on the job's bundle (its JSON answer). */
function engineInfer(...args: string[]): any {
  const out = execFileSync(
    process.execPath,
    [
      join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js'),
      'infer',
      '--model',
      join(t.modelsDir, MODEL),
      '--adapter',
      bundleDir,
      ...args,
    ],
    { env: { ...t.env, EDGETUNE_QUIET: '1' }, encoding: 'utf8' },
  );
  return JSON.parse(out);
}

/** The status and problem document of a failed call. */
async function failure(p: Promise<unknown>): Promise<{ status: number; code: string; headers: Headers }> {
  const e = (await p.then(
    () => null,
    (err) => err,
  )) as InstanceType<typeof OpenAI.APIError> | null;
  expect(e, 'the call should fail').toBeInstanceOf(OpenAI.APIError);
  return { status: e!.status as number, code: (e!.error as { code: string }).code, headers: e!.headers as Headers };
}

beforeAll(async () => {
  await initBackend({ quiet: true });
  t = await createTestEnv({ setupModels: (d) => createTinyModel(join(d, MODEL), { layers: 4 }) });
  writeToyTask(join(t.dir, 'train.jsonl'), 32, 1);
  writeToyTask(join(t.dir, 'val.jsonl'), 16, 2);
  api = await startTestApi(t);
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: ADMIN_KEY, maxRetries: 0 });
  w = spawnWorker(t, 'w-serve');
  const trainFile = await client.files.create({
    file: await toFile(readFileSync(join(t.dir, 'train.jsonl')), 'train.jsonl'),
    purpose: 'fine-tune',
  });
  const valFile = await client.files.create({
    file: await toFile(readFileSync(join(t.dir, 'val.jsonl')), 'val.jsonl'),
    purpose: 'fine-tune',
  });
  expect(trainFile).toMatchObject({ object: 'file', filename: 'train.jsonl', purpose: 'fine-tune' });
  // the job needs the worker's base model registered
  await waitFor(
    async () => (await fetch(`${api.url}/v1/models/${MODEL}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).ok,
    30_000,
    'model',
  );
  const job = await client.fineTuning.jobs.create({
    model: MODEL,
    training_file: trainFile.id,
    validation_file: valFile.id,
    suffix: 'toy',
    hyperparameters: { max_steps: 6, batch_size: 4, lora_r: 4, learning_rate: 5e-3 } as never,
  });
  expect(job).toMatchObject({ object: 'fine_tuning.job', model: MODEL });
  jobId = job.id;
  const done = await waitFor(
    async () => {
      const j = await client.fineTuning.jobs.retrieve(jobId);
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) && j;
    },
    120_000,
    'job finished',
  );
  expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
  ftModel = done.fine_tuned_model!;
  expect(ftModel).toBe(`ft:${MODEL}:toy:${jobId}`);
  // the bundle, for the engine's own answer
  const res = await fetch(`${api.url}/v1/jobs/${jobId}/adapter?format=bundle`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  expect(res.status).toBe(200);
  bundleDir = join(t.dir, 'bundle');
  mkdirSync(bundleDir);
  const tarFile = join(t.dir, 'bundle.tar');
  writeFileSync(tarFile, Buffer.from(await res.arrayBuffer()));
  await tar.extract({ file: tarFile, cwd: bundleDir });
  // a long job keeps the worker tuning while the model is served
  const busy = await client.fineTuning.jobs.create({
    model: MODEL,
    training_file: trainFile.id,
    suffix: 'busy',
    hyperparameters: { max_steps: 2000, batch_size: 4, lora_r: 4 } as never,
  });
  busyJobId = busy.id;
  await waitFor(async () => (await client.fineTuning.jobs.retrieve(busyJobId)).status === 'running', 60_000, 'busy job running');
}, 240_000);

afterAll(async () => {
  if (w) await stopWorker(w);
  await api?.stop();
  await t?.destroy();
});

describe('fine-tuning jobs through the openai client', () => {
  it('lists, pages, reads events and checkpoints, and refuses to cancel a finished job', async () => {
    const page = await client.fineTuning.jobs.list({ limit: 10 });
    expect(page.data.map((j) => j.id)).toContain(jobId);
    expect(page.has_more).toBe(false);
    const events = await client.fineTuning.jobs.listEvents(jobId, { limit: 100 });
    expect(events.data.length).toBeGreaterThan(0);
    expect(events.data[0]).toMatchObject({ object: 'fine_tuning.job.event', id: expect.any(String), message: expect.any(String) });
    const checkpoints = await client.fineTuning.jobs.checkpoints.list(jobId);
    expect(Array.isArray(checkpoints.data)).toBe(true);
    const cancel = await failure(client.fineTuning.jobs.cancel(jobId));
    expect(cancel.status).toBe(409);
    // the alias answers as /v1/jobs does
    const direct = await (await fetch(`${api.url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).json();
    expect(await client.fineTuning.jobs.retrieve(jobId)).toEqual(direct);
  });
});

describe('completions', () => {
  let greedy: OpenAI.Completions.Completion;

  it('answers greedily what `edgetune-engine infer` answers for the same bundle and prompt', async () => {
    greedy = await client.completions.create({ model: ftModel, prompt: PROMPT, max_tokens: 32, temperature: 0 });
    expect(greedy).toMatchObject({ object: 'text_completion', model: ftModel, choices: [{ index: 0, logprobs: null }] });
    const engine = engineInfer('--prompt', PROMPT, '--max-new-tokens', '32');
    expect(greedy.choices[0].text).toBe(engine.text);
    expect(greedy.usage!.completion_tokens).toBe(engine.tokens);
    expect(greedy.choices[0].finish_reason).toBe(engine.tokens === 32 ? 'length' : 'stop');
    expect(greedy.usage!.prompt_tokens).toBeGreaterThan(5);
    expect(greedy.usage!.total_tokens).toBe(greedy.usage!.prompt_tokens + greedy.usage!.completion_tokens);
    // answered while the same worker tunes another job
    expect((await client.fineTuning.jobs.retrieve(busyJobId)).status).toBe('running');
  });

  it('streams the same text as SSE chunks, with usage last when asked', async () => {
    const stream = await client.completions.create({
      model: ftModel,
      prompt: PROMPT,
      max_tokens: 32,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Completions.Completion[] = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    expect(text).toBe(greedy.choices[0].text);
    expect(chunks.filter((c) => c.choices[0]?.text).length).toBeGreaterThan(1); // token by token, not all at once
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe(greedy.choices[0].finish_reason);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: greedy.usage });
  });

  it('ends before a stop sequence', async () => {
    const full = greedy.choices[0].text;
    expect(full.length).toBeGreaterThan(1);
    const stop = full.slice(1, 2);
    const r = await client.completions.create({ model: ftModel, prompt: PROMPT, max_tokens: 32, temperature: 0, stop: [stop] });
    expect(r.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  it('scores labels: the voted label, as `edgetune-engine infer --labels` finds it', async () => {
    const r = (await client.completions.create({
      model: ftModel,
      prompt: PROMPT,
      max_tokens: 1,
      temperature: 0,
      labels: [' spam', ' ham'],
    } as never)) as OpenAI.Completions.Completion;
    const choice = r.choices[0] as OpenAI.Completions.CompletionChoice & { label_probabilities: Record<string, number> };
    expect([' spam', ' ham']).toContain(choice.text);
    const probs = choice.label_probabilities;
    expect(probs[' spam'] + probs[' ham']).toBeCloseTo(1, 5);
    const engine = engineInfer('--prompt', PROMPT, '--labels', ' spam, ham');
    expect(choice.text.trim()).toBe(engine.label);
    expect(probs[' spam']).toBeCloseTo(engine.probabilities.spam, 4);
  });
});

describe('chat completions', () => {
  it('answers with the chat template, streamed or not', async () => {
    const messages = [{ role: 'user' as const, content: 'Meeting notes: sea ocean sailor' }];
    const r = await client.chat.completions.create({ model: ftModel, messages, max_tokens: 8, temperature: 0 });
    expect(r).toMatchObject({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant' } }] });
    expect(r.usage!.prompt_tokens).toBeGreaterThan(8); // the template's role markers came with the message
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(8);
    const stream = await client.chat.completions.create({ model: ftModel, messages, max_tokens: 8, temperature: 0, stream: true });
    let content = '';
    let role: string | undefined;
    let finish: string | null = null;
    for await (const c of stream) {
      role ??= c.choices[0]?.delta.role;
      content += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(role).toBe('assistant');
    expect(content).toBe(r.choices[0].message.content);
    expect(finish).toBe(r.choices[0].finish_reason);
  });
});

describe('errors', () => {
  it('404 model_not_found for unknown models and jobs of other projects; 400 for bad parameters', async () => {
    for (const model of ['no-such-model', `ft:${MODEL}:toy:ftjob_000000000000000000000000`, MODEL]) {
      const e = await failure(client.completions.create({ model, prompt: 'x' }));
      expect([e.status, e.code]).toEqual([404, 'model_not_found']);
    }
    const hot = await failure(client.completions.create({ model: ftModel, prompt: 'x', temperature: 5 }));
    expect(hot.status).toBe(400);
    const many = await failure(client.chat.completions.create({ model: ftModel, messages: [{ role: 'user', content: 'x' }], n: 2 }));
    expect(many.status).toBe(400);
    const labels = await failure(client.completions.create({ model: ftModel, prompt: 'x', labels: [' spam', ' spammy'] } as never));
    expect([labels.status, labels.code]).toEqual([400, 'invalid_labels']);
  });

  it('503 model_not_loaded with Retry-After once no worker has the base model', async () => {
    await stopWorker(w);
    const e = await failure(client.completions.create({ model: ftModel, prompt: PROMPT, max_tokens: 4 }));
    expect([e.status, e.code]).toEqual([503, 'model_not_loaded']);
    expect(Number(e.headers.get('retry-after'))).toBeGreaterThan(0);
    const s = await failure(client.completions.create({ model: ftModel, prompt: PROMPT, max_tokens: 4, stream: true }));
    expect(s.status).toBe(503);
  });
});
