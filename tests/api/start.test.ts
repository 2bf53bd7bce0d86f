// `npm start` (scripts/start.mjs) against a database and queue prefix of its own: once the API and the worker
// are up it prints where the API, Swagger UI and dashboard are, and those addresses answer; Ctrl-C stops both.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createTestEnv, REPO_ROOT, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv();
}, 60_000);
afterAll(async () => {
  await t?.destroy();
});

const freePort = () =>
  new Promise<number>((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });

describe('npm start', () => {
  it('prints the API, Swagger UI and dashboard addresses once the API and a worker are up', async () => {
    const port = await freePort();
    const p = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'start.mjs')], {
      env: { ...t.env, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((res) => p.once('exit', (code) => res(code)));
    let out = '',
      err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    try {
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no addresses after 90 s; stdout:\n${out}\nstderr:\n${err}`)), 90_000);
        p.stdout.on('data', (d) => {
          out += d;
          if (/dashboard +http/.test(out)) {
            clearTimeout(timer);
            res();
          }
        });
        exited.then((code) => rej(new Error(`npm start exited ${code}:\n${err}`)));
      });
      const base = `http://127.0.0.1:${port}`;
      expect(out).toContain('edgetune is up (API and one worker):');
      expect(out).toContain(`  API         ${base}/\n`);
      expect(out).toContain(`  Swagger UI  ${base}/docs\n`);
      expect(out).toContain(`  dashboard   ${base}/dashboard/\n`);
      expect((await fetch(`${base}/docs`)).status).toBe(200);
      expect((await fetch(`${base}/dashboard/`)).status).toBe(200);
      p.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
  }, 150_000);
});
