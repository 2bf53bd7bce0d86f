// Swagger UI in a real browser: starts the API (its own database and queue prefix), opens /docs in headless
// Debian chromium through playwright-core, and checks that every operation of /openapi.json is rendered
// (an opblock with its method and path, whose deep-link id names the operationId).
// Chromium: `apt-get install -y chromium` (.ci/run installs it); never `npx playwright install`.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM, SKIP_REASON } from '../helpers/browser.js';
import { chromium, type BrowserContext } from 'playwright-core';
import { createTestEnv, startTestApi, type TestEnv } from '../helpers/service.js';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

// Skipped only where chromium is absent and could not be installed (.ci/run runs `apt-get install -y chromium`).
describe.skipIf(!HAVE_CHROMIUM)(`Swagger UI at /docs in headless chromium${SKIP_REASON}`, () => {
  let env: TestEnv;
  let api: { url: string; stop: () => Promise<void> };
  let ctx: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
    profile = mkdtempSync(join(tmpdir(), 'edgetune-chrome-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
  });

  afterAll(async () => {
    await ctx?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await api?.stop();
    await env?.destroy();
  });

  it('renders every operation of /openapi.json', async () => {
    const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as {
      info: { title: string };
      paths: Record<string, Record<string, { operationId?: string; tags?: string[] }>>;
    };
    const expected = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([m]) => METHODS.includes(m))
        .map(([method, op]) => ({ method, path, operationId: op.operationId ?? null, tag: op.tags?.[0] ?? 'default' })),
    );
    expect(expected.length).toBeGreaterThanOrEqual(20);

    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto(`${api.url}/docs`, { waitUntil: 'load' });
    expect(res?.status()).toBeLessThan(400);
    await page.waitForSelector('.swagger-ui .info .title', { timeout: 15_000 });
    await expect.poll(() => page.locator('.opblock').count(), { timeout: 10_000 }).toBeGreaterThanOrEqual(expected.length);
    // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator: innerText is the text a person sees
    expect(await page.locator('.swagger-ui .info .title').innerText()).toContain(doc.info.title);

    // What the page shows: each opblock's method, path (data-path) and element id (operations-<tag>-<operationId>).
    const rendered = await page.$$eval('.opblock', (blocks) =>
      blocks.map((b) => ({
        id: b.id,
        method: (b.querySelector('.opblock-summary-method')?.textContent ?? '').trim().toLowerCase(),
        path:
          b.querySelector('.opblock-summary-path')?.getAttribute('data-path') ??
          (b.querySelector('.opblock-summary-path')?.textContent ?? '').trim(),
      })),
    );
    const seen = new Set(rendered.map((r) => `${r.method} ${r.path.replace(/\u200b/g, '')}`));
    const ids = new Set(rendered.map((r) => r.id));
    const missing = expected.filter(
      (e) => !seen.has(`${e.method} ${e.path}`) && !(e.operationId && ids.has(`operations-${e.tag}-${e.operationId}`)),
    );
    expect(missing, 'operations of /openapi.json that Swagger UI does not show').toEqual([]);
    // The deep-link ids name the operationIds too.
    for (const e of expected)
      if (e.operationId) expect(ids.has(`operations-${e.tag}-${e.operationId}`), `${e.method} ${e.path}`).toBe(true);
    expect(errors).toEqual([]);
  });
});
