// @edgetune/client against a real API (own database and queue prefix, no worker): typed calls, problem+json
// errors as EdgetuneApiError, multipart upload, the SSE event stream (resumed with Last-Event-ID when it
// drops), adapter download errors, and the SSE reader on its own.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  createEdgetuneClient,
  EdgetuneApiError,
  EdgetuneConnectionError,
  ok,
  type EdgetuneClient,
  type JobStreamMessage,
} from '../../packages/client/src/index.js';
import { readSse } from '../../packages/client/src/sse.js';
import { ADMIN_KEY, createTestEnv, fakeModel, startTestApi, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let client: EdgetuneClient;
let trainId: string;
const jsonl = (n: number) =>
  `${Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `m ${i}\nAnswer:`, completion: ' ham' })).join('\n')}\n`;

beforeAll(async () => {
  t = await createTestEnv({ setupModels: (d) => fakeModel(join(d, 'tiny-llama')) });
  api = await startTestApi(t);
  client = createEdgetuneClient({ baseUrl: `${api.url}/`, apiKey: ADMIN_KEY });
  trainId = (await client.uploadFile(jsonl(16), 'train.jsonl')).id;
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('typed calls and errors', () => {
  it('uploads a file (multipart) and lists it', async () => {
    const f = await client.uploadFile(new TextEncoder().encode(jsonl(3)), 'small.jsonl');
    expect(f).toMatchObject({ object: 'file', filename: 'small.jsonl', records: 3, purpose: 'fine-tune' });
    const list = await ok(client.GET('/v1/files', { params: { query: { limit: 100 } } }));
    expect(list.data.map((x) => x.id)).toEqual(expect.arrayContaining([f.id, trainId]));
  });

  it('an invalid file is an EdgetuneApiError with status, code and detail naming the line', async () => {
    const e = await rejection(client.uploadFile('{"prompt": "a", "completion": " b"}\nnot json\n', 'bad.jsonl'));
    expect(e).toBeInstanceOf(EdgetuneApiError);
    const err = e as EdgetuneApiError;
    expect(err.status).toBe(422);
    expect(err.code).toEqual(expect.any(String));
    expect(err.detail).toMatch(/line 2/);
  });

  it('a bad key: 401 invalid_api_key from a typed call', async () => {
    const bad = createEdgetuneClient({ baseUrl: api.url, apiKey: 'et-not-a-key' });
    const e = (await rejection(bad.GET('/v1/models'))) as EdgetuneApiError;
    expect(e).toBeInstanceOf(EdgetuneApiError);
    expect([e.status, e.code]).toEqual([401, 'invalid_api_key']);
  });

  it('an unknown job: 404 with the stable code; param of a bad body field', async () => {
    const e = (await rejection(client.GET('/v1/jobs/{id}', { params: { path: { id: 'ftjob_nope' } } }))) as EdgetuneApiError;
    expect([e.status, e.code]).toEqual([404, 'job_not_found']);
    const bad = (await rejection(
      client.POST('/v1/jobs', { body: { model: 'no-such-model', training_file: trainId } }),
    )) as EdgetuneApiError;
    expect(bad).toBeInstanceOf(EdgetuneApiError);
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.param).toBe('model');
  });

  it('an unreachable API is an EdgetuneConnectionError naming the URL', async () => {
    const srv = createServer().listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    await new Promise((r) => srv.close(r));
    const gone = createEdgetuneClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: ADMIN_KEY });
    const e = (await rejection(gone.GET('/v1/models'))) as Error;
    expect(e).toBeInstanceOf(EdgetuneConnectionError);
    expect(e.message).toBe(`cannot reach http://127.0.0.1:${port}/v1/models: ECONNREFUSED`);
  });

  it('dry run returns the plan; create, get and cancel a job', async () => {
    const body = { model: 'tiny-llama', training_file: trainId, hyperparameters: { max_steps: 5 } };
    const plan = await ok(client.POST('/v1/jobs', { body, params: { query: { dry_run: true } } }));
    expect(plan).toMatchObject({ object: 'job.plan', total_steps: 5, plan: { fits: expect.any(Boolean) } });
    const job = await ok(client.POST('/v1/jobs', { body }));
    expect(job).toMatchObject({ object: 'fine_tuning.job', model: 'tiny-llama' });
    const id = (job as { id: string }).id;
    expect((await ok(client.GET('/v1/jobs/{id}', { params: { path: { id } } }))).id).toBe(id);
    const c = await ok(client.POST('/v1/jobs/{id}/cancel', { params: { path: { id } } }));
    expect(c.status).toBe('cancelled');
    const e = (await rejection(client.downloadAdapter(id, { format: 'bundle' }))) as EdgetuneApiError;
    expect(e).toBeInstanceOf(EdgetuneApiError);
    expect(e.status).toBe(409);
  });
});

describe('event stream', () => {
  it("yields a finished job's events and the end message; a dropped stream resumes after the last event id", async () => {
    const job = (await ok(
      client.POST('/v1/jobs', { body: { model: 'tiny-llama', training_file: trainId, hyperparameters: { max_steps: 5 } } }),
    )) as { id: string };
    await ok(client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: job.id } } }));
    const whole: JobStreamMessage[] = [];
    for await (const m of client.streamJobEvents(job.id)) whole.push(m);
    expect(whole.at(-1)).toEqual({ event: 'end', data: { status: 'cancelled' } });
    const events = whole.slice(0, -1);
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events.every((m) => m.id?.startsWith('evt_') && (m.data as { id: string }).id === m.id)).toBe(true);

    // a fetch whose first event stream breaks right after the first event
    const seen: (string | null)[] = [];
    let cut = false;
    const flaky: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (!url.endsWith('/events/stream')) return res;
      seen.push(new Headers(init?.headers).get('last-event-id'));
      if (cut) return res;
      cut = true;
      // pass the stream through up to the end of its first event, then fail it like a dropped connection
      const reader = res.body!.getReader();
      const dec = new TextDecoder();
      let text = '';
      const body = new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          const { value, done } = await reader.read();
          if (done) return ctrl.close();
          text += dec.decode(value, { stream: true });
          const at = text.search(/(^|\n)id: evt_/);
          const end = at < 0 ? -1 : text.indexOf('\n\n', at + 1);
          if (end < 0) return;
          ctrl.enqueue(new TextEncoder().encode(text.slice(0, end + 2)));
          await reader.cancel();
          ctrl.error(new TypeError('terminated'));
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const c2 = createEdgetuneClient({ baseUrl: api.url, apiKey: ADMIN_KEY, fetch: flaky });
    const reconnects: number[] = [];
    const resumed: JobStreamMessage[] = [];
    for await (const m of c2.streamJobEvents(job.id, { onReconnect: (n) => reconnects.push(n) })) resumed.push(m);
    expect(reconnects).toEqual([1]);
    expect(seen).toEqual([null, events[0]!.id]);
    expect(resumed).toEqual(whole);
  });

  it('an unknown job: the stream rejects with 404 instead of reconnecting', async () => {
    const e = (await rejection(client.streamJobEvents('ftjob_nope').next())) as EdgetuneApiError;
    expect([e.status, e.code]).toEqual([404, 'job_not_found']);
  });
});

describe('SSE reader', () => {
  it('parses fields, CRLF and CR line ends, multi-line data, comments and retry-only frames split across chunks', async () => {
    const text =
      ': ping\n\nretry: 1500\n\nid: 1\r\nevent: metrics\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: plain\r\rid: 2\nevent: end\ndata: x\n\n';
    const bytes = new TextEncoder().encode(text);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 7) c.enqueue(bytes.slice(i, i + 7));
        c.close();
      },
    });
    const out = [];
    for await (const m of readSse(body)) out.push(m);
    expect(out).toEqual([
      { event: 'message', retry: 1500 },
      { id: '1', event: 'metrics', data: '{"a":\n1}' },
      { event: 'message', data: 'plain' },
      { id: '2', event: 'end', data: 'x' },
    ]);
  });
});
