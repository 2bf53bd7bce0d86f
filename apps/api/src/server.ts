/**
 * Starts the API server: serves the API on PORT. On start it creates the bootstrap admin key when asked
 * (EDGETUNE_BOOTSTRAP_API_KEY) and registers the base models of its own models folder, if any; while it
 * runs it deletes Idempotency-Key answers past their retention (EDGETUNE_IDEMPOTENCY_RETENTION_MS) and sends
 * the webhook deliveries of the `webhooks` queue (webhook-deliveries.ts).
 */
import { tmpdir } from 'node:os';
import { Queue } from 'bullmq';
import { buildApp } from './app.js';
import { within } from './deadline.js';
import { UPLOAD_SCRATCH } from './routes/files.js';
import { startIdempotencySweeper } from './idempotency.js';
import { startWebhookDeliveries } from './webhook-deliveries.js';
import { bootstrapAdminKey } from './keys.js';
import { loadConfig, sweepScratchDirs } from '@edgetune/core';
import { createPrisma } from '@edgetune/store';
import { scanModels } from '@edgetune/core';
import { registerModels } from '@edgetune/store';
import { QUEUE_NAME, type QueueJobData } from '@edgetune/core';
import {
  REDIS_COMMAND_TIMEOUT_MS,
  redisConnection,
  redisReady,
  StoreWatch,
  storeAddress,
  waitForDatabase,
  watchRedis,
} from '@edgetune/store';

/** How long a request's query waits for a database connection, ms: an outage answers 503 within about this. */
const API_DB_CONNECT_TIMEOUT_MS = 2000;
/** How long each part of stopping (sweeper, webhook sender, HTTP server, queue, pool) may take before the next goes ahead, ms. */
const STOP_STEP_MS = 10_000;

/**
 * Starts the API; resolves once it listens. Returns a stop function. It waits for PostgreSQL first (one line
 * per attempt on `opts.log`, with backoff); without Redis it starts anyway: reads that need only PostgreSQL
 * answer, and what needs the queue answers 503 `queue_unavailable` until Redis is back. A store that goes
 * away later is logged once, and once more when it is back.
 * @throws StoreConfigError when PostgreSQL refuses the connection for good (authentication, missing database).
 */
export async function startApi(
  env: NodeJS.ProcessEnv = process.env,
  opts: { logger?: boolean; log?: (line: string) => void } = {},
): Promise<{ port: number; stop: () => Promise<void> }> {
  const config = loadConfig(env);
  let log = opts.log ?? (() => {});
  await waitForDatabase(config.databaseUrl, (l) => log(l));
  const dbWatch = new StoreWatch('PostgreSQL', storeAddress(config.databaseUrl), (l) => log(l));
  const db = createPrisma(config.databaseUrl, { watch: dbWatch, connectionTimeoutMs: API_DB_CONNECT_TIMEOUT_MS });
  // requests fail fast on this one while Redis is down; the webhook sender's Worker waits on its own
  const redis = redisConnection(config.redisUrl, { failFast: true });
  watchRedis(redis, new StoreWatch('Redis', storeAddress(config.redisUrl), (l) => log(l)));
  const workerRedis = redisConnection(config.redisUrl);
  workerRedis.on('error', () => {}); // reported by the watch on `redis`
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', () => {}); // connection errors: reported by the watch
  const app = await buildApp({ config, db, redis, queue, logger: opts.logger === false ? false : { level: config.logLevel } });
  if (!opts.log) log = (l) => app.log.warn(l);
  // upload folders of API processes that were killed mid-upload
  for (const dir of await sweepScratchDirs(tmpdir(), [UPLOAD_SCRATCH])) app.log.info(`removed stale upload folder ${dir}`);
  if (await bootstrapAdminKey(db, config.bootstrapApiKey)) app.log.info('created project "default" with the bootstrap admin key');
  const found = await scanModels(config.modelsDir, (m) => app.log.warn(m));
  await registerModels(db, found, `api@${config.hostName}`, (m) => app.log.warn(m));
  app.log.info(`base models in ${config.modelsDir}: ${found.map((m) => m.id).join(', ') || '(none)'}`);
  // a fail-fast connection refuses commands until its first connect is done: let it finish (Redis may be down)
  await redisReady(redis, REDIS_COMMAND_TIMEOUT_MS);
  await app.listen({ port: config.port, host: config.host });
  // here, not in buildApp: the OpenAPI generator builds the app with no database
  const sweeper = startIdempotencySweeper(db, config.idempotencyRetentionMs, app.log, config.idempotencyTimeoutMs);
  const deliveries = startWebhookDeliveries({ config, db, redis: workerRedis, log: app.log });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  let stopping: Promise<void> | null = null;
  // each step bounded: a store in a bad state must not keep a stopping API from exiting
  const step = (what: string, run: () => Promise<unknown>) =>
    within(run(), STOP_STEP_MS).then(
      () => {},
      (e: Error) => log(`stopping: ${what}: ${e.message === 'timeout' ? `still under way after ${STOP_STEP_MS} ms; going on` : e.message}`),
    );
  const stop = () =>
    (stopping ??= (async () => {
      await step('idempotency sweeper', () => sweeper.stop());
      await step('webhook sender', () => deliveries.stop());
      await step('HTTP server', () => app.close());
      await step('job queue', () => queue.close());
      redis.disconnect();
      workerRedis.disconnect();
      await step('database pool', () => db.$disconnect());
    })());
  return { port, stop };
}
