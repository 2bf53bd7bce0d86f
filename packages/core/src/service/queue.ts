/** The contract of the BullMQ queue between API and workers, and of the Redis pub/sub channels beside it. */

/** Queue name (keys live under the configured prefix). */
export const QUEUE_NAME = 'tuning';

/** Payload of a queue job: the database is the source of truth, the queue only says which job to run. */
export interface QueueJobData {
  jobId: string;
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
