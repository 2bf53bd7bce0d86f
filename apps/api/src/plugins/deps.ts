/**
 * The app's dependencies as decorators of the Fastify instance (`app.db`, `app.queue`, ...): routes and
 * other plugins read them there instead of importing the app. Closing the app ends the open event streams
 * (before the server stops listening) and the event hub; the caller owns and closes db, redis and queue.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config, QueueJobData } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';
import { EventHub } from '../hub.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    db: PrismaClient;
    redis: Redis;
    queue: Queue<QueueJobData>;
    /** wakes event streams when their job has new events (one Redis subscriber per process) */
    hub: EventHub;
    /** finishers of open SSE streams (called when the app closes) */
    streams: Set<() => void>;
  }
}

/** What the routes use: the decorators this plugin adds. */
export type AppDeps = Pick<FastifyInstance, 'config' | 'db' | 'redis' | 'queue' | 'hub' | 'streams'>;

/** Options of {@link deps}: the connections the app uses (the hub and the stream set are made here). */
export type DepsOptions = Pick<AppDeps, 'config' | 'db' | 'redis' | 'queue'>;

/** Decorates the root instance with {@link AppDeps}. */
const deps = fp<DepsOptions>(
  async (app, o) => {
    app.decorate('config', o.config);
    app.decorate('db', o.db);
    app.decorate('redis', o.redis);
    app.decorate('queue', o.queue);
    app.decorate('hub', new EventHub(o.redis, o.config.queuePrefix));
    app.decorate('streams', new Set<() => void>());
    app.addHook('preClose', async () => {
      for (const finish of [...app.streams]) finish();
    });
    app.addHook('onClose', async () => {
      await app.hub.close();
    });
  },
  { name: 'deps' },
);

export default deps;
