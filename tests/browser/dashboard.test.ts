// The dashboard in a real browser: a real API (own database and queue prefix), a real worker child process on
// the tiny test model, and headless Debian chromium through playwright-core, driven through the UI only:
// sign in, upload files (a bad one shows its line), plan and start a short job, watch its charts fill and
// its status reach `succeeded`, download both adapter formats, and check the models and workers pages.
// EDGETUNE_SCREENSHOTS=<folder> saves a screenshot of each page there (docs/dashboard holds the committed ones).
// Chromium: `apt-get install -y chromium` (.ci/run installs it); never `npx playwright install`.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tar from 'tar';
import { CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM, SKIP_REASON } from '../helpers/browser.js';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import {
  ADMIN_KEY,
  REPO_ROOT,
  createTestEnv,
  spawnWorker,
  startTestApi,
  stopWorker,
  type TestEnv,
  type WorkerProcess,
} from '../helpers/service.js';

const SHOTS = process.env.EDGETUNE_SCREENSHOTS ? resolve(REPO_ROOT, process.env.EDGETUNE_SCREENSHOTS) : null;
const MODEL = 'tiny-llama';
const BAD_LINE = 3;

/** Lists a tar file's entry paths (throws on a file that is not a tar archive). */
async function tarEntries(file: string): Promise<string[]> {
  const entries: string[] = [];
  await tar.list({ file, strict: true, onReadEntry: (e) => entries.push(e.path) });
  return entries;
}

// Skipped only where chromium is absent and could not be installed (.ci/run runs `apt-get install -y chromium`).
describe.skipIf(!HAVE_CHROMIUM)(`dashboard in headless chromium${SKIP_REASON}`, () => {
  let t: TestEnv;
  let api: { url: string; stop: () => Promise<void> };
  let worker: WorkerProcess;
  let ctx: BrowserContext;
  let profile: string;
  let page: Page;
  let jobId: string;
  const pageErrors: string[] = [];

  const shot = async (name: string) => {
    if (!SHOTS) return;
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const go = async (hash: string) => {
    await page.goto(`${api.url}/dashboard/${hash}`);
    await page.waitForSelector('header nav');
  };

  beforeAll(async () => {
    // the bundle from the current sources (npm ci builds it too)
    const build = spawnSync(process.execPath, [join(REPO_ROOT, 'apps', 'api', 'scripts', 'build-dashboard.mjs')], { encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`dashboard build failed: ${build.stderr}`);
    await initBackend({ quiet: true }); // createTinyModel makes its random weights with TF.js
    t = await createTestEnv({ setupModels: (d) => createTinyModel(join(d, MODEL), { layers: 4 }) });
    writeToyTask(join(t.dir, 'train.jsonl'), 48, 1);
    writeToyTask(join(t.dir, 'val.jsonl'), 24, 2);
    const lines = readFileSync(join(t.dir, 'train.jsonl'), 'utf8').split('\n').slice(0, 4);
    lines[BAD_LINE - 1] = '{"prompt": "no completion here"';
    writeFileSync(join(t.dir, 'bad.jsonl'), `${lines.join('\n')}\n`);
    api = await startTestApi(t);
    worker = spawnWorker(t, 'w-dash');
    profile = mkdtempSync(join(tmpdir(), 'edgetune-chrome-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      acceptDownloads: true,
      viewport: { width: 1280, height: 800 },
      args: CHROMIUM_ARGS,
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  afterAll(async () => {
    await ctx?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (worker) await stopWorker(worker);
    await api?.stop();
    await t?.destroy();
  });

  it('is served without a key, from / too, and stays out of the OpenAPI document', async () => {
    const index = await fetch(`${api.url}/dashboard/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toMatch(/text\/html/);
    const html = await index.text();
    expect(html).toContain('app.js');
    expect(html).not.toMatch(/https?:\/\//); // nothing from a CDN
    const js = await fetch(`${api.url}/dashboard/app.js`);
    expect(js.status).toBe(200);
    expect((await js.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(`${api.url}/dashboard/app.css`)).status).toBe(200);
    const root = await fetch(`${api.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard/');
    const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p === '/' || p.startsWith('/dashboard'))).toEqual([]);
  });

  it('signs in with an API key (a wrong one is refused) and keeps it in sessionStorage', async () => {
    await page.goto(`${api.url}/`);
    expect(page.url()).toBe(`${api.url}/dashboard/`);
    await page.waitForSelector('form input[name=api_key]');
    await page.fill('input[name=api_key]', 'et-not-a-key');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('.signin .error').textContent()).toMatch(/invalid|revoked/i);
    await shot('sign-in');
    await page.fill('input[name=api_key]', ADMIN_KEY);
    await page.click('button[type=submit]');
    await page.waitForSelector('header nav');
    expect(await page.evaluate(() => sessionStorage.getItem('edgetune.api_key'))).toBe(ADMIN_KEY);
  });

  it('uploads files; a bad file shows the validation report with its line number', async () => {
    await go('#/files');
    for (const name of ['train.jsonl', 'val.jsonl']) {
      await page.setInputFiles('input[type=file]', join(t.dir, name));
      await page.click('form.upload button[type=submit]');
      await expect.poll(() => page.locator('p.ok').textContent()).toContain(name);
    }
    await expect.poll(() => page.locator('table.files tbody tr').count()).toBe(2);
    await page.setInputFiles('input[type=file]', join(t.dir, 'bad.jsonl'));
    await page.click('form.upload button[type=submit]');
    await page.waitForSelector('.error table.problems');
    const lines = await page.locator('.error table.problems td.line').allTextContents();
    expect(lines).toEqual([String(BAD_LINE)]);
    await expect.poll(() => page.locator('table.files tbody tr').count()).toBe(2); // nothing stored
    await shot('files');
  });

  it('lists the models and the live worker with its device', async () => {
    await go('#/models');
    const row = page.locator(`tr[data-model="${MODEL}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('llama');
    await shot('models');
    await go('#/workers');
    const online = page.locator('tr[data-worker^="w-dash:"] [data-online=true]');
    await online.waitFor({ timeout: 60_000 }); // the worker measures its device before it reports
    expect(await page.locator('tr[data-worker^="w-dash:"]').textContent()).toMatch(/wasm|cpu|tensorflow/);
    await shot('workers');
  });

  it('plans the job in the form, then starts it', async () => {
    await go('#/new');
    await page.locator(`select[name=model] option[value="${MODEL}"]`).waitFor({ state: 'attached' });
    await page.selectOption('select[name=model]', MODEL);
    const fileId = async (name: string) =>
      (await page.locator('select[name=training_file] option', { hasText: name }).first().getAttribute('value')) as string;
    await page.selectOption('select[name=training_file]', await fileId('train.jsonl'));
    await page.selectOption('select[name=validation_file]', await fileId('val.jsonl'));
    await page.fill('input[name=suffix]', 'dash');
    for (const [k, v] of Object.entries({
      max_steps: '12',
      batch_size: '4',
      lora_r: '4',
      learning_rate: '0.005',
      eval_steps: '4',
      every_n_steps: '4',
    }))
      await page.fill(`input[name=${k}]`, v);
    await page.check('input[name=keep_after_finish]'); // else its checkpoints go when it ends
    expect(await page.locator('button.primary').isDisabled()).toBe(true); // no plan yet
    await page.click('form.new-job button[type=submit]');
    const plan = page.locator('.plan-box[data-plan-fits=true]');
    await plan.waitFor();
    expect(await plan.textContent()).toMatch(/Total steps\s*12/);
    expect(await plan.textContent()).toContain('Peak memory (RSS)');
    await shot('new-job');
    await page.click('button.primary');
    await page.waitForURL(/#\/jobs\/ftjob/);
    jobId = decodeURIComponent(page.url().split('#/jobs/')[1]);
  });

  it('follows the job live: charts get points and the status reaches succeeded', async () => {
    await page.waitForSelector(`section.job[data-job="${jobId}"]`);
    // the job was just created: the page follows its SSE stream
    await page.locator('.live').waitFor({ timeout: 15_000 });
    const lossPoints = page.locator('figure.chart').nth(0).locator('[data-points]');
    await expect.poll(async () => Number(await lossPoints.getAttribute('data-points')), { timeout: 120_000 }).toBeGreaterThan(0);
    await page.locator('.title-row [data-status=succeeded]').waitFor({ timeout: 120_000 });
    await expect.poll(async () => Number(await lossPoints.getAttribute('data-points'))).toBe(12);
    const valPoints = page.locator('figure.chart').nth(1).locator('[data-points]');
    expect(Number(await valPoints.getAttribute('data-points'))).toBeGreaterThan(0);
    await expect.poll(() => page.locator('.live').count()).toBe(0);
    // per-exit and voted accuracy, the forecast against measured, checkpoints, the event log
    await expect.poll(() => page.locator('table.exits tbody tr').count()).toBe(4);
    expect(await page.locator('[data-voted-accuracy]').textContent()).toMatch(/%$/);
    expect(await page.locator('table.plan').getAttribute('data-plan-source')).toBe('worker');
    expect(await page.locator('table.plan tbody tr').first().textContent()).toMatch(/Peak memory.*iB.*iB/);
    // the latest two kept (EDGETUNE_CHECKPOINTS_KEPT), and the best on validation when it is an earlier one
    await expect.poll(() => page.locator('table.checkpoints tbody tr').count()).toBeGreaterThanOrEqual(2);
    expect(await page.locator('table.checkpoints tbody tr').count()).toBeLessThanOrEqual(3);
    expect(await page.locator('ol.events').textContent()).toContain('Job succeeded');
    await shot('job');
  });

  it('downloads the PEFT adapter and the edge bundle as tar archives', async () => {
    const save = async (format: string) => {
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`button[data-download=${format}]`)]);
      expect(dl.suggestedFilename()).toBe(`${jobId}-${format}.tar`);
      const file = join(t.dir, `dl-${format}.tar`);
      await dl.saveAs(file);
      expect(statSync(file).size).toBeGreaterThan(0);
      return tarEntries(file);
    };
    expect((await save('peft')).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(await save('bundle')).toEqual(expect.arrayContaining(['manifest.json', 'edge_llm.json', 'peft/adapter_model.safetensors']));
  });

  it('lists the job, then signs out', async () => {
    await go('#/jobs');
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor();
    expect(await row.locator('[data-status]').getAttribute('data-status')).toBe('succeeded');
    expect(await row.textContent()).toContain(MODEL);
    expect(await row.textContent()).toContain('12/12');
    await shot('jobs');
    await page.click('header button.link');
    await page.waitForSelector('input[name=api_key]');
    expect(await page.evaluate(() => sessionStorage.getItem('edgetune.api_key'))).toBeNull();
    expect(pageErrors).toEqual([]);
  });
});
