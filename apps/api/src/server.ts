/**
 * Starts the API server: serves the API on PORT. On start it creates the bootstrap admin key when asked
 * (EDGETUNE_BOOTSTRAP_API_KEY) and registers the base models of its own models folder, if any; while it
 * runs it deletes Idempotency-Key answers past their retention (EDGETUNE_IDEMPOTENCY_RETENTION_MS) and sends
 * the webhook deliveries of the `webhooks` queue (webhook-deliveries.ts).
 */
import { Queue } from 'bullmq';
import { buildApp } from './app.js';
import { startIdempotencySweeper } from './idempotency.js';
import { startWebhookDeliveries } from './webhook-deliveries.js';
import { bootstrapAdminKey } from './keys.js';
import { loadConfig } from '@edgetune/core';
import { createPrisma } from '@edgetune/store';
import { scanModels } from '@edgetune/core';
import { registerModels } from '@edgetune/store';
import { QUEUE_NAME, type QueueJobData } from '@edgetune/core';
import { redisConnection } from '@edgetune/store';

/** Starts the API; resolves once it listens. Returns a stop function. */
export async function startApi(
  env: NodeJS.ProcessEnv = process.env,
  opts: { logger?: boolean } = {},
): Promise<{ port: number; stop: () => Promise<void> }> {
  const config = loadConfig(env);
  const db = createPrisma(config.databaseUrl);
  const redis = redisConnection(config.redisUrl);
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redis, prefix: config.queuePrefix });
  const app = await buildApp({ config, db, redis, queue, logger: opts.logger === false ? false : { level: config.logLevel } });
  if (await bootstrapAdminKey(db, config.bootstrapApiKey)) app.log.info('created project "default" with the bootstrap admin key');
  const found = await scanModels(config.modelsDir, (m) => app.log.warn(m));
  await registerModels(db, found, `api@${config.hostName}`, (m) => app.log.warn(m));
  app.log.info(`base models in ${config.modelsDir}: ${found.map((m) => m.id).join(', ') || '(none)'}`);
  await app.listen({ port: config.port, host: config.host });
  // here, not in buildApp: the OpenAPI generator builds the app with no database
  const sweeper = startIdempotencySweeper(db, config.idempotencyRetentionMs, app.log, config.idempotencyTimeoutMs);
  const deliveries = startWebhookDeliveries({ config, db, redis, log: app.log });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      await sweeper.stop();
      await deliveries.stop();
      await app.close();
      await queue.close();
      redis.disconnect();
      await db.$disconnect();
    })());
  return { port, stop };
}
