/**
 * The webhook vocabulary the API and the worker agree on: the event types (named as OpenAI names its
 * fine-tuning webhook events), the job status each stands for, and the payload of the `webhooks` queue.
 */
import type { JobStatus } from './status.js';

/** Event types a webhook can subscribe to: one per terminal job status. */
export const WEBHOOK_EVENT_TYPES = ['fine_tuning.job.succeeded', 'fine_tuning.job.failed', 'fine_tuning.job.cancelled'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The event type of a job that reached `status`, or null when the status sends no event (not terminal). */
export function webhookEventOf(status: JobStatus | string): WebhookEventType | null {
  const type = `fine_tuning.job.${status}`;
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type) ? (type as WebhookEventType) : null;
}

/**
 * The body of a webhook request, shaped like OpenAI's webhook events: `created_at` in seconds since the
 * epoch (when the job reached its status), `data.id` the job's id. The event `id` is the job event that
 * recorded the status (`GET /v1/jobs/{id}/events` lists it).
 */
export interface WebhookEvent {
  object: 'event';
  id: string;
  type: WebhookEventType;
  created_at: number;
  data: { id: string };
}

/** Name of the BullMQ queue of webhook deliveries (under the same prefix as the job queue). */
export const WEBHOOK_QUEUE_NAME = 'webhooks';

/** Payload of a `webhooks` queue job (its BullMQ job id is the delivery's id): the database holds the rest. */
export interface WebhookQueueData {
  deliveryId: string;
}
