#!/usr/bin/env node
// `npm start`: waits for PostgreSQL (a line per attempt), applies migrations, then runs the API and one worker
// (each waits for the stores it needs the same way) until SIGINT/SIGTERM, which it forwards (the worker
// checkpoints its running job and re-queues it). Once the API answers /readyz and the worker has joined the
// queue, prints where the API, Swagger UI and dashboard are (HOST and PORT as the API reads them).
// Configuration: see README.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const core = await import('@edgetune/core').catch(() => {
  console.error('edgetune: packages/core is not built: run npm run build first');
  process.exit(1);
});
let config;
try {
  config = core.loadConfig();
} catch (e) {
  // a malformed environment: one line naming the variable, as the API and the worker say it
  if (!(e instanceof core.ConfigError)) throw e;
  console.error(`edgetune: ${e.message}`);
  process.exit(2);
}
// PostgreSQL first: a line per attempt, with backoff, until its server answers (the migration creates the
// database when it is missing, so this asks the server's `postgres` database); credentials it refuses end here
const store = await import('@edgetune/store');
const server = new URL(config.databaseUrl);
server.pathname = '/postgres';
try {
  await store.waitForDatabase(server.toString(), (line) => console.error(`edgetune: ${line}`));
} catch (e) {
  if (!(e instanceof store.StoreConfigError)) throw e;
  console.error(`edgetune: ${e.message}`);
  process.exit(1);
}
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

/** Polls `check` every half second until it resolves true; false once `ms` have passed or the service is stopping. */
async function waitUntil(check, ms) {
  const end = Date.now() + ms;
  while (!exiting && Date.now() < end) {
    if (await check().catch(() => false)) return true;
    await sleep(500);
  }
  return false;
}

/** Prints the URLs once the API is ready and a worker has joined the queue (or after a minute without one). */
async function announce() {
  const { host, port } = config;
  if (port === 0) {
    console.log('edgetune: the API listens on a free port (PORT=0): its log above says which');
    return;
  }
  const wildcard = host === '0.0.0.0' || host === '::';
  const hostPart = (h) => (h.includes(':') ? `[${h}]` : h);
  const probe = `http://${hostPart(wildcard ? (host === '::' ? '::1' : '127.0.0.1') : host)}:${port}`;
  if (!(await waitUntil(async () => (await fetch(`${probe}/readyz`)).ok, 120_000))) return;
  const [{ Queue }, { Redis }] = await Promise.all([import('bullmq'), import('ioredis')]);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  const queue = new Queue(core.QUEUE_NAME, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', () => {}); // a Redis outage: the API and the worker report it
  const worker = await waitUntil(async () => (await queue.getWorkers()).length > 0, 60_000);
  await queue.close().catch(() => {});
  redis.disconnect();
  if (exiting) return;
  const base = `http://${wildcard ? 'localhost' : hostPart(host)}:${port}`;
  console.log(
    [
      `edgetune is up${worker ? ' (API and one worker)' : ' (API; no worker has joined the queue yet: see its log above)'}:`,
      `  API         ${base}/`,
      `  Swagger UI  ${base}/docs`,
      `  dashboard   ${base}/dashboard/`,
      '  stop with Ctrl-C (a running job checkpoints and goes back to the queue)',
    ].join('\n'),
  );
}
announce().catch((e) => console.error(`edgetune: could not check that the API and worker are up: ${e.message}`));

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
