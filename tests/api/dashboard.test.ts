// The dashboard's static route without a browser or a database: the bundle's files with their types, `/` and
// `/dashboard` redirecting, no API key needed, and a clear 503 problem where the bundle was never built.
// (tests/browser/dashboard.test.ts drives the built dashboard in chromium.)
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import errorHandling from '../../apps/api/src/plugins/errors.js';
import dashboard from '../../apps/api/src/routes/dashboard.js';

const dirs: string[] = [];
const folder = (files: Record<string, string>) => {
  const d = mkdtempSync(join(tmpdir(), 'edgetune-dash-'));
  dirs.push(d);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
};
const appWith = async (root: string) => {
  const app = Fastify();
  await app.register(errorHandling);
  await app.register(dashboard, { root });
  return app;
};

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('dashboard route', () => {
  it('serves the bundle at /dashboard/ and redirects / and /dashboard there', async () => {
    const app = await appWith(folder({ 'index.html': '<!doctype html><title>x</title>', 'app.js': 'export {};', 'app.css': 'body{}' }));
    const index = await app.inject({ url: '/dashboard/' });
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toMatch(/^text\/html/);
    expect((await app.inject({ url: '/dashboard/app.js' })).headers['content-type']).toMatch(/javascript/);
    expect((await app.inject({ url: '/dashboard/app.css' })).headers['content-type']).toMatch(/^text\/css/);
    const root = await app.inject({ url: '/' });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe('/dashboard/');
    const bare = await app.inject({ url: '/dashboard' });
    expect(bare.statusCode).toBe(302);
    expect(bare.headers.location).toBe('/dashboard/');
    expect((await app.inject({ url: '/dashboard/nope.js' })).statusCode).toBe(404);
    await app.close();
  });

  it('answers 503 dashboard_not_built when the bundle is missing', async () => {
    const app = await appWith(folder({}));
    const r = await app.inject({ url: '/dashboard/' });
    expect(r.statusCode).toBe(503);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(r.json()).toMatchObject({ code: 'dashboard_not_built', status: 503 });
    await app.close();
  });
});
