/** The BullMQ queue between API and workers, and the Redis pub/sub channels beside it. */
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';

/** Queue name (keys live under the configured prefix). */
export const QUEUE_NAME = 'tuning';

/** Payload of a queue job: the database is the source of truth, the queue only says which job to run. */
export interface QueueJobData {
  jobId: string;
}

/**
 * Puts job `jobId` on the queue as BullMQ job `queueJobId` (the row's `queueJobId`: a re-queued job gets a
 * new one), keeping the last 1000 completed and 5000 failed queue jobs for inspection.
 * @throws Redis errors as they come.
 */
export async function enqueueJob(queue: Queue<QueueJobData>, jobId: string, queueJobId: string): Promise<void> {
  await queue.add('tune', { jobId }, { jobId: queueJobId, removeOnComplete: 1000, removeOnFail: 5000 });
}

/** Pub/sub channels under a prefix: new job events (message = job id), and control messages to workers. */
export function channels(prefix: string): { events: string; control: string } {
  return { events: `${prefix}:job-events`, control: `${prefix}:control` };
}

/** A control message on {@link channels}.control. */
export interface ControlMessage {
  type: 'cancel';
  job_id: string;
}

/** An ioredis connection as BullMQ wants it (`maxRetriesPerRequest: null`). */
export function redisConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}
