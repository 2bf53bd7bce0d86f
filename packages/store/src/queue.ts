/** The BullMQ queue between API and workers: enqueueing, and the Redis connection BullMQ wants. */
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { QueueJobData } from '@edgetune/core';
import { assertRedisReady } from './availability.js';

/**
 * Puts job `jobId` on the queue as BullMQ job `queueJobId` (the row's `queueJobId`: a re-queued job gets a
 * new one), keeping the last 1000 completed and 5000 failed queue jobs for inspection.
 * On a queue whose connection fails fast ({@link redisConnection} with `failFast`) it throws at once while
 * Redis is unreachable instead of waiting for the connection.
 * @throws Redis errors as they come ({@link isRedisUnavailable} recognises the unreachable ones).
 */
export async function enqueueJob(queue: Queue<QueueJobData>, jobId: string, queueJobId: string): Promise<void> {
  const conn = queue.opts.connection as Partial<Redis>;
  if (conn instanceof Redis && conn.options.enableOfflineQueue === false) assertRedisReady(conn);
  await queue.add('tune', { jobId }, { jobId: queueJobId, removeOnComplete: 1000, removeOnFail: 5000 });
}

/** How long a command on a fail-fast connection waits for Redis' answer, ms. */
export const REDIS_COMMAND_TIMEOUT_MS = 2000;

/**
 * An ioredis connection as BullMQ wants it. By default for Workers and subscribers: commands wait while it
 * reconnects (`maxRetriesPerRequest: null`, offline queue). With `failFast` (for Queues and publishing in a
 * request): while Redis is unreachable a command fails at once, and one Redis does not answer fails after
 * {@link REDIS_COMMAND_TIMEOUT_MS}, with an error {@link isRedisUnavailable} recognises.
 * Add an `error` listener (e.g. {@link watchRedis}), or ioredis prints each connection error.
 */
export function redisConnection(url: string, opts: { failFast?: boolean } = {}): Redis {
  if (opts.failFast)
    return new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: REDIS_COMMAND_TIMEOUT_MS });
  return new Redis(url, { maxRetriesPerRequest: null });
}
