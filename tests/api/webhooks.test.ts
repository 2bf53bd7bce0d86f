// Webhooks over HTTP against real PostgreSQL and Redis, without a worker: CRUD, validation and tenancy; a
// cancelled job's signed `fine_tuning.job.cancelled` event (verified by a real receiver with standardwebhooks),
// sent once even when the status is recorded twice, and the events of jobs the workers' reconciler settles;
// retries with backoff through the queue and the delivery log.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_NAME } from '../../packages/core/src/index.js';
import { reconcileJobs } from '../../apps/worker/src/reconcile.js';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { addEvents, createPrisma, type PrismaClient } from '../../packages/store/src/index.js';
import { fakeModel, Client, createTestEnv, startTestApi, waitFor, type TestEnv } from '../helpers/service.js';

const BACKOFF_MS = 300;
const MAX_ATTEMPTS = 3;
const TIMEOUT_MS = 1000;

/** One request the receiver got. */
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver on a random port: `answers[path]` gives the status of each request in turn (then 200); 0 = never answer. */
class Receiver {
  readonly got = new Map<string, Received[]>();
  readonly answers = new Map<string, number[]>();
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const path = req.url ?? '/';
        this.got.set(path, [...(this.got.get(path) ?? []), { headers: req.headers, body }]);
        const status = this.answers.get(path)?.shift() ?? 200;
        if (status === 0) return; // hang: the sender times out
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  requests(path: string): Received[] {
    return this.got.get(path) ?? [];
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** The Standard Webhooks headers of a request. */
const signed = (r: Received) => ({
  'webhook-id': String(r.headers['webhook-id']),
  'webhook-timestamp': String(r.headers['webhook-timestamp']),
  'webhook-signature': String(r.headers['webhook-signature']),
});

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let admin: Client;
let receiver: Receiver;
let db: PrismaClient;
let redis: Redis;

const line = (i: number) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' });

/** A client for a new project of its own (its webhooks see only its jobs). */
async function newProject(name: string): Promise<Client> {
  const p = await admin.post('/v1/projects', { name });
  const k = await admin.post(`/v1/projects/${p.body.id}/keys`, { name: 'test' });
  return admin.withKey(k.body.secret);
}

/** Creates a queued job (no worker runs it) and cancels it; returns its id. */
async function cancelledJob(c: Client): Promise<string> {
  const file = (await c.upload(`${Array.from({ length: 20 }, (_, i) => line(i)).join('\n')}\n`, 'train.jsonl')).body.id;
  const job = await c.post('/v1/jobs', { model: 'tiny-llama', training_file: file, hyperparameters: { max_steps: 4 } });
  expect(job.status, JSON.stringify(job.body)).toBe(201);
  expect((await c.post(`/v1/jobs/${job.body.id}/cancel`)).body.status).toBe('cancelled');
  return job.body.id;
}

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => fakeModel(join(d, 'tiny-llama')),
    env: {
      EDGETUNE_WEBHOOK_BACKOFF_MS: String(BACKOFF_MS),
      EDGETUNE_WEBHOOK_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
      EDGETUNE_WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
    },
  });
  receiver = new Receiver();
  await receiver.start();
  api = await startTestApi(t);
  admin = new Client(api.url);
  db = createPrisma(t.databaseUrl, { max: 2 });
  redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
});

afterAll(async () => {
  await api?.stop();
  await receiver?.stop();
  redis?.disconnect();
  await db?.$disconnect();
  await t?.destroy();
});

describe('webhook endpoints', () => {
  it('creates (secret shown once), lists, gets and deletes', async () => {
    const c = await newProject('crud');
    const r = await c.post('/v1/webhooks', {
      url: `${receiver.url}/crud`,
      events: ['fine_tuning.job.succeeded', 'fine_tuning.job.failed'],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      id: expect.stringMatching(/^wh_/),
      object: 'webhook_endpoint',
      url: `${receiver.url}/crud`,
      events: ['fine_tuning.job.succeeded', 'fine_tuning.job.failed'],
      created_at: expect.any(Number),
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
    });
    const { secret, ...shown } = r.body;
    expect(() => new Webhook(secret)).not.toThrow();
    expect((await c.get(`/v1/webhooks/${r.body.id}`)).body).toEqual(shown);
    const list = await c.get('/v1/webhooks');
    expect(list.body).toMatchObject({ object: 'list', data: [shown], has_more: false, first_id: r.body.id });
    expect(list.text).not.toContain('whsec_');
    const d = await c.delete(`/v1/webhooks/${r.body.id}`);
    expect(d.body).toEqual({ id: r.body.id, object: 'webhook_endpoint', deleted: true });
    const gone = await c.get(`/v1/webhooks/${r.body.id}`);
    expect(gone.status).toBe(404);
    expect(gone.body).toMatchObject({ code: 'webhook_not_found', param: 'id' });
    expect((await c.delete(`/v1/webhooks/${r.body.id}`)).status).toBe(404);
  });

  it('rejects a non-http URL, unknown or no events, and extra fields with problem+json 400', async () => {
    const c = await newProject('validation');
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ url: 'ftp://example.com/hook', events: ['fine_tuning.job.failed'] }, /^url$/],
      [{ url: 'not a url', events: ['fine_tuning.job.failed'] }, /^url$/],
      [{ url: 'https://example.com/hook', events: ['fine_tuning.job.started'] }, /^events\[0\]$/],
      [{ url: 'https://example.com/hook', events: [] }, /^events$/],
      [{ url: 'https://example.com/hook', events: ['fine_tuning.job.failed', 'fine_tuning.job.failed'] }, /^events$/],
      [{ url: 'https://example.com/hook' }, /^events$/],
      [{ url: 'https://example.com/hook', events: ['fine_tuning.job.failed'], secret: 'whsec_mine' }, /^secret$/],
    ];
    for (const [body, param] of bad) {
      const r = await c.post('/v1/webhooks', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(r.body.code).toBe('invalid_request');
      expect(r.body.param, JSON.stringify(r.body)).toMatch(param);
    }
    const unknown = await c.post('/v1/webhooks', bad[2][0]);
    expect(unknown.body.detail).toContain('fine_tuning.job.cancelled'); // names the event types it knows
    expect((await c.get('/v1/webhooks')).body.data).toEqual([]);
  });

  it("keeps projects apart: another project's webhook answers 404", async () => {
    const a = await newProject('tenant-a');
    const b = await newProject('tenant-b');
    const w = (await a.post('/v1/webhooks', { url: `${receiver.url}/tenant`, events: ['fine_tuning.job.cancelled'] })).body;
    for (const r of [
      await b.get(`/v1/webhooks/${w.id}`),
      await b.get(`/v1/webhooks/${w.id}/deliveries`),
      await b.delete(`/v1/webhooks/${w.id}`),
    ]) {
      expect(r.status).toBe(404);
      expect(r.body.code).toBe('webhook_not_found');
    }
    expect((await b.get('/v1/webhooks')).body.data).toEqual([]);
    expect((await a.get(`/v1/webhooks/${w.id}`)).status).toBe(200);
  });
});

describe('deliveries', () => {
  it('sends a cancelled job one signed fine_tuning.job.cancelled event, even when the status is recorded twice', async () => {
    const c = await newProject('cancel');
    const w = (await c.post('/v1/webhooks', { url: `${receiver.url}/cancel`, events: ['fine_tuning.job.cancelled'] })).body;
    const other = (await c.post('/v1/webhooks', { url: `${receiver.url}/cancel-other`, events: ['fine_tuning.job.succeeded'] })).body;
    const jobId = await cancelledJob(c);
    const [req] = await waitFor(
      async () => receiver.requests('/cancel').length > 0 && receiver.requests('/cancel'),
      10_000,
      'the delivery',
    );

    // verified with the secret, as a receiver does; a tampered body or signature, or another secret, is rejected
    const event = new Webhook(w.secret).verify(req.body, signed(req)) as Record<string, any>;
    const statusEvent = (await c.get(`/v1/jobs/${jobId}/events?limit=100`)).body.data.find((e: any) => e.data?.status === 'cancelled');
    expect(event).toEqual({
      object: 'event',
      id: statusEvent.id,
      type: 'fine_tuning.job.cancelled',
      created_at: statusEvent.created_at,
      data: { id: jobId },
    });
    expect(req.headers['content-type']).toBe('application/json');
    expect(String(req.headers['webhook-signature'])).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(() => new Webhook(w.secret).verify(req.body.replace(jobId, 'ftjob_other'), signed(req))).toThrow(WebhookVerificationError);
    expect(() =>
      new Webhook(w.secret).verify(req.body, { ...signed(req), 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}` }),
    ).toThrow(WebhookVerificationError);
    expect(() => new Webhook(other.secret).verify(req.body, signed(req))).toThrow(WebhookVerificationError);

    // the status recorded again (as a second writer would): no second delivery
    await addEvents(db, redis, t.prefix, jobId, [{ type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } }]);
    const log = await waitFor(
      async () => {
        const r = (await c.get(`/v1/webhooks/${w.id}/deliveries`)).body;
        return r.data[0]?.status === 'succeeded' && r;
      },
      10_000,
      'the delivery log',
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(receiver.requests('/cancel')).toHaveLength(1);
    expect(receiver.requests('/cancel-other')).toHaveLength(0);
    expect(log.data).toHaveLength(1);
    expect(log.data[0]).toMatchObject({
      id: req.headers['webhook-id'],
      object: 'webhook_delivery',
      webhook_id: w.id,
      event_type: 'fine_tuning.job.cancelled',
      fine_tuning_job_id: jobId,
      status: 'succeeded',
      attempts: [{ attempt: 1, status_code: 200, error: null, started_at: expect.any(Number), duration_ms: expect.any(Number) }],
      next_retry_at: null,
      delivered_at: expect.any(Number),
      payload: event,
    });
    expect((await c.get(`/v1/webhooks/${other.id}/deliveries`)).body.data).toEqual([]);
  });

  it("delivers the statuses a worker's reconciler writes (failed, cancelled)", async () => {
    const c = await newProject('reconciled');
    const w = (
      await c.post('/v1/webhooks', { url: `${receiver.url}/reconciled`, events: ['fine_tuning.job.failed', 'fine_tuning.job.cancelled'] })
    ).body;
    const file = (await c.upload(`${Array.from({ length: 20 }, (_, i) => line(i)).join('\n')}\n`, 'train.jsonl')).body.id;
    const create = async () =>
      (await c.post('/v1/jobs', { model: 'tiny-llama', training_file: file, hyperparameters: { max_steps: 4 } })).body.id;
    const [abandoned, cancelling] = [await create(), await create()];
    // as an API that died before queueing, and a worker that died before acknowledging a cancel, leave them
    await db.job.update({ where: { id: abandoned }, data: { status: 'validating_files', queueJobId: null } });
    await db.job.update({ where: { id: cancelling }, data: { status: 'cancelling', queueJobId: 'gone' } });
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: t.prefix });
    try {
      const settled = await reconcileJobs({ db, queue, redis, prefix: t.prefix }, { graceMs: 0, validatingGraceMs: 0 });
      expect(settled.map((s) => [s.jobId, s.to]).sort()).toEqual(
        [
          [abandoned, 'failed'],
          [cancelling, 'cancelled'],
        ].sort(),
      );
    } finally {
      await queue.close();
    }
    const reqs = await waitFor(
      async () => receiver.requests('/reconciled').length === 2 && receiver.requests('/reconciled'),
      10_000,
      'two deliveries',
    );
    const events = reqs.map((r) => new Webhook(w.secret).verify(r.body, signed(r)) as { type: string; data: { id: string } });
    expect(events.map((e) => [e.data.id, e.type]).sort()).toEqual(
      [
        [abandoned, 'fine_tuning.job.failed'],
        [cancelling, 'fine_tuning.job.cancelled'],
      ].sort(),
    );
  });

  it('retries a 500 (and a timeout) with backoff through the queue; the log shows every attempt', async () => {
    const c = await newProject('retry');
    receiver.answers.set('/retry', [500, 0]);
    const w = (await c.post('/v1/webhooks', { url: `${receiver.url}/retry`, events: ['fine_tuning.job.cancelled'] })).body;
    await cancelledJob(c);
    const d = await waitFor(
      async () => {
        const r = (await c.get(`/v1/webhooks/${w.id}/deliveries`)).body;
        return r.data[0]?.status === 'succeeded' && r.data[0];
      },
      20_000,
      'the third attempt',
    );
    expect(d.attempts).toMatchObject([
      { attempt: 1, status_code: 500, error: 'HTTP 500' },
      { attempt: 2, status_code: null, error: `no answer within ${TIMEOUT_MS} ms` },
      { attempt: 3, status_code: 200, error: null },
    ]);
    const reqs = receiver.requests('/retry');
    expect(reqs).toHaveLength(3);
    // one message: the same webhook-id and body, signed anew at each attempt
    expect(new Set(reqs.map((r) => r.headers['webhook-id']))).toEqual(new Set([d.id]));
    for (const r of reqs) expect(new Webhook(w.secret).verify(r.body, signed(r))).toEqual(d.payload);
    // backoff: BACKOFF_MS before the 2nd attempt, twice that before the 3rd (plus the timeout)
    const [a1, a2, a3] = (await db.webhookAttempt.findMany({ where: { deliveryId: d.id }, orderBy: { attempt: 'asc' } })).map((a) => a);
    expect(a2.startedAt.getTime() - a1.startedAt.getTime()).toBeGreaterThanOrEqual(BACKOFF_MS);
    expect(a3.startedAt.getTime() - a2.startedAt.getTime()).toBeGreaterThanOrEqual(TIMEOUT_MS + 2 * BACKOFF_MS);
  });

  it(`marks a delivery failed after ${MAX_ATTEMPTS} failed attempts`, async () => {
    const c = await newProject('failing');
    receiver.answers.set('/failing', [503, 503, 503, 503]);
    const w = (await c.post('/v1/webhooks', { url: `${receiver.url}/failing`, events: ['fine_tuning.job.cancelled'] })).body;
    await cancelledJob(c);
    const pending = await waitFor(
      async () => {
        const r = (await c.get(`/v1/webhooks/${w.id}/deliveries`)).body;
        return r.data[0]?.attempts.length === 1 && r.data[0];
      },
      10_000,
      'the first attempt',
    );
    expect(pending).toMatchObject({ status: 'pending', next_retry_at: expect.any(Number) });
    const d = await waitFor(
      async () => {
        const r = (await c.get(`/v1/webhooks/${w.id}/deliveries`)).body;
        return r.data[0]?.status === 'failed' && r.data[0];
      },
      10_000,
      'the last attempt',
    );
    expect(d.attempts.map((a: any) => a.status_code)).toEqual([503, 503, 503]);
    expect(d).toMatchObject({ next_retry_at: null, delivered_at: null });
    await new Promise((r) => setTimeout(r, 4 * BACKOFF_MS));
    expect(receiver.requests('/failing')).toHaveLength(MAX_ATTEMPTS);
  });
});
