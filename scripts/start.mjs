#!/usr/bin/env node
// `npm start`: applies migrations, then runs the API and one worker until SIGINT/SIGTERM, which it
// forwards (the worker checkpoints its running job and re-queues it). Configuration: see README.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const mig = spawnSync(process.execPath, [join(root, 'scripts', 'db-migrate.mjs'), 'deploy'], { stdio: 'inherit' });
if (mig.status !== 0) process.exit(mig.status ?? 1);
const children = [
  spawn(process.execPath, [join(root, 'apps', 'api', 'dist', 'main.js')], { stdio: 'inherit' }),
  spawn(process.execPath, [join(root, 'apps', 'worker', 'dist', 'main.js')], { stdio: 'inherit' }),
];
let exiting = false;
const stop = (sig) => {
  if (exiting) return;
  exiting = true;
  for (const c of children) if (c.exitCode === null) c.kill(sig);
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop(sig));
let code = 0;
await Promise.all(
  children.map(
    (c) =>
      new Promise((res) =>
        c.once('exit', (c1) => {
          code ||= c1 ?? 0;
          stop('SIGTERM');
          res();
        }),
      ),
  ),
);
process.exit(code);
