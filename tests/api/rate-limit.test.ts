// Rate limits of /v1 over HTTP against real PostgreSQL and Redis, with low limits set through the environment:
// per API key, per client address, and failed authentications per address (a wrong-key flood is cut off after a
// few 401s, until its window ends); 429 problem+json `rate_limited` with Retry-After; health and metrics exempt.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startApi } from '../../apps/api/src/server.js';
import { Client, createTestEnv, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
const stops: (() => Promise<void>)[] = [];

/** Starts an API on the test environment with `env` on top; returns a client with the bootstrap key. */
async function apiWith(env: Record<string, string>): Promise<Client> {
  const { port, stop } = await startApi({ ...t.env, ...env }, { logger: false });
  stops.push(stop);
  return new Client(`http://127.0.0.1:${port}`);
}

function expectRateLimited(r: { status: number; headers: Headers; body: any }, windowS: number) {
  expect(r.status, JSON.stringify(r.body)).toBe(429);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status: 429, code: 'rate_limited' });
  const after = Number(r.headers.get('retry-after'));
  expect(after).toBeGreaterThanOrEqual(1);
  expect(after).toBeLessThanOrEqual(windowS);
}

beforeAll(async () => {
  t = await createTestEnv();
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await t?.destroy();
});

describe('rate limits', () => {
  it('cut a wrong-key flood off after the allowed failures, for that address, until the window ends', async () => {
    const admin = await apiWith({ EDGETUNE_AUTH_FAILURE_LIMIT: '5', EDGETUNE_RATE_LIMIT_WINDOW_MS: '4000' });
    expect((await admin.get('/v1/files')).status).toBe(200);
    const wrong = admin.withKey('et-wrong-key');
    for (let i = 0; i < 5; i++) expect((await wrong.get('/v1/files')).status).toBe(401);
    expectRateLimited(await wrong.get('/v1/files'), 4);
    expectRateLimited(await admin.withKey(null).get('/v1/files'), 4);
    // the whole address waits, a valid key included: the flood's source is not told which keys are valid
    expectRateLimited(await admin.get('/v1/files'), 4);
    expect((await admin.withKey(null).get('/healthz')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 4100));
    expect((await admin.get('/v1/files')).status).toBe(200);
  });

  it('limit requests per API key and per client address', async () => {
    const admin = await apiWith({ EDGETUNE_RATE_LIMIT_PER_KEY: '10', EDGETUNE_RATE_LIMIT_PER_ADDRESS: '25' });
    const project = (await admin.get('/v1/projects')).body.data[0].id; // address: 1, admin key: 1
    const keyA = await admin.post(`/v1/projects/${project}/keys`, { name: 'a' }); // 2, 2
    const keyB = await admin.post(`/v1/projects/${project}/keys`, { name: 'b' }); // 3, 3
    const a = admin.withKey(keyA.body.secret);
    const b = admin.withKey(keyB.body.secret);
    for (let i = 0; i < 10; i++) expect((await a.get('/v1/files')).status).toBe(200); // 13
    const over = await a.get('/v1/files'); // 14
    expectRateLimited(over, 60);
    expect(over.body.detail).toMatch(/API key/);
    for (let i = 0; i < 10; i++) expect((await b.get('/v1/files')).status).toBe(200); // 24
    expect((await admin.get('/v1/files')).status).toBe(200); // 25
    const address = await admin.get('/v1/files'); // 26
    expectRateLimited(address, 60);
    expect(address.body.detail).toMatch(/address/);
    // not limited: health, metrics, the OpenAPI document
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) expect((await admin.get(path)).status, path).toBe(200);
  });

  it('are off at 0', async () => {
    const admin = await apiWith({
      EDGETUNE_RATE_LIMIT_PER_KEY: '0',
      EDGETUNE_RATE_LIMIT_PER_ADDRESS: '0',
      EDGETUNE_AUTH_FAILURE_LIMIT: '0',
    });
    const wrong = admin.withKey('et-wrong-key');
    for (let i = 0; i < 40; i++) expect((await wrong.get('/v1/files')).status).toBe(401);
    expect((await admin.get('/v1/files')).status).toBe(200);
  });
});
