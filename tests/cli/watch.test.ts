// `edgetune jobs watch` on a job a real worker (child process) runs to success: progress bar on stderr, the
// final job on stdout, exit code 0; then `adapters download` streams the bundle to a tar file.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { ADMIN_KEY, createTestEnv, spawnWorker, startTestApi, stopWorker, type TestEnv, type WorkerProcess } from '../helpers/service.js';
import { edgetune } from './run.js';

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let worker: WorkerProcess;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  await initBackend({ quiet: true }); // createTinyModel draws its weights with TF.js
  t = await createTestEnv({ setupModels: (d) => createTinyModel(join(d, 'tiny-llama'), { layers: 2 }) });
  writeToyTask(join(t.dir, 'train.jsonl'), 16, 1);
  api = await startTestApi(t);
  worker = spawnWorker(t, 'w-cli');
  env = { EDGETUNE_API_URL: api.url, EDGETUNE_API_KEY: ADMIN_KEY };
});

afterAll(async () => {
  if (worker) await stopWorker(worker);
  await api?.stop();
  await t?.destroy();
});

describe('jobs watch', () => {
  it('follows a short job to success: progress with loss and tokens/s, exit 0; the bundle downloads', async () => {
    const train = (await edgetune(['files', 'upload', join(t.dir, 'train.jsonl'), '-q'], env)).stdout.trim();
    const created = await edgetune(
      ['jobs', 'create', '--model', 'tiny-llama', '--training-file', train, '--max-steps', '6', '--batch-size', '4', '--lora-r', '2', '-q'],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    const w = await edgetune(['jobs', 'watch', id], env, 110_000);
    expect(w.code, `${w.stderr}\n${worker.log()}`).toBe(0);
    expect(w.stdout).toMatch(/^status:\s+succeeded$/m);
    expect(w.stdout).toContain(`edgetune adapters download ${id}`);
    // not a TTY: one bar line per ~5 %, the last at 6/6
    expect(w.stderr).toMatch(new RegExp(`${id} \\[#+\\] 6/6  loss \\d+\\.\\d{4}  \\d+ tok/s`));
    expect(w.stderr).toMatch(/Job succeeded/);

    const out = join(t.dir, 'bundle.tar');
    const dl = await edgetune(['adapters', 'download', id, '--format', 'bundle', '--out', out, '--json'], env);
    expect(dl.code, dl.stderr).toBe(0);
    expect(JSON.parse(dl.stdout)).toEqual({ job_id: id, format: 'bundle', file: out, bytes: statSync(out).size });
    const names: string[] = [];
    await tar.list({ file: out, onReadEntry: (e) => names.push(e.path) });
    expect(names).toEqual(expect.arrayContaining(['edge_llm.json']));
  }, 150_000);
});
