// Starting the API or a worker with a malformed environment: one line naming the variable, exit code 2.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../engine/helpers.js';

const start = (entry: string, env: NodeJS.ProcessEnv) =>
  spawnSync(process.execPath, [join(REPO_ROOT, entry)], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });

describe('startup with a malformed environment', () => {
  it('the API says which variable is wrong in one line and exits 2', () => {
    const r = start('apps/api/dist/main.js', { PORT: 'abc' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('edgetune-api: PORT must be a non-negative integer, got "abc"');
  });

  it('a worker says which variable is wrong in one line and exits 2', () => {
    const r = start('apps/worker/dist/main.js', { EDGETUNE_WORKER_CONCURRENCY: 'x' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('edgetune-worker: EDGETUNE_WORKER_CONCURRENCY must be a positive integer, got "x"');
  });
});
