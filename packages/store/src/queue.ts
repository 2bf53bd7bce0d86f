/** The BullMQ queue between API and workers: enqueueing, and the Redis connection BullMQ wants. */
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { QueueJobData } from '@edgetune/core';

/**
 * Puts job `jobId` on the queue as BullMQ job `queueJobId` (the row's `queueJobId`: a re-queued job gets a
 * new one), keeping the last 1000 completed and 5000 failed queue jobs for inspection.
 * @throws Redis errors as they come.
 */
export async function enqueueJob(queue: Queue<QueueJobData>, jobId: string, queueJobId: string): Promise<void> {
  await queue.add('tune', { jobId }, { jobId: queueJobId, removeOnComplete: 1000, removeOnFail: 5000 });
}

/** An ioredis connection as BullMQ wants it (`maxRetriesPerRequest: null`). */
export function redisConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}
