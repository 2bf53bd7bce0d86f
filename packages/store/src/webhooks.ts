/**
 * Webhook deliveries, created where every status change is recorded ({@link addEvents}): when a job reaches
 * a terminal status, one `webhook_deliveries` row per webhook of its project that subscribes to the event,
 * put on the `webhooks` queue (the API process sends them: apps/api/src/webhook-deliveries.ts). A row is
 * unique per webhook, job and event type, so a status written twice is delivered once.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { newId, WEBHOOK_QUEUE_NAME, webhookEventOf, type WebhookEvent, type WebhookQueueData } from '@edgetune/core';
import type { Prisma, PrismaClient } from './db.js';

/** A job event as {@link addEvents} writes it. */
export interface RecordedEvent {
  id: string;
  type: string;
  createdAt: Date;
  data?: Record<string, unknown> | null;
}

/** The `webhooks` queues this process opened, by connection and prefix (one each, kept for the connection's life). */
const queues = new WeakMap<Redis, Map<string, Queue<WebhookQueueData>>>();

/** The `webhooks` queue under `prefix` on `redis` (opened once per connection and prefix; it shares the connection). */
export function webhookQueue(redis: Redis, prefix: string): Queue<WebhookQueueData> {
  let byPrefix = queues.get(redis);
  if (!byPrefix) queues.set(redis, (byPrefix = new Map()));
  let q = byPrefix.get(prefix);
  if (!q) {
    byPrefix.set(prefix, (q = new Queue<WebhookQueueData>(WEBHOOK_QUEUE_NAME, { connection: redis, prefix })));
    q.on('error', () => {}); // connection errors: for the connection's owner to report (BullMQ prints unheard ones)
  }
  return q;
}

/**
 * Puts delivery `deliveryId` on the queue as BullMQ job `deliveryId`, after `delayMs` (a delivery already
 * queued, delayed or running is left as it is: BullMQ ignores a second job with the same id). Finished queue
 * jobs are removed: the database keeps the log, and a delivery left `pending` by a crashed attempt can be
 * queued again.
 * @throws Redis errors as they come.
 */
export async function enqueueDelivery(queue: Queue<WebhookQueueData>, deliveryId: string, delayMs = 0): Promise<void> {
  await queue.add('deliver', { deliveryId }, { jobId: deliveryId, delay: delayMs, removeOnComplete: true, removeOnFail: true });
}

/**
 * The delivery rows (not yet written) of job `jobId`'s terminal status events in `events`: one per event and
 * webhook of the job's project subscribed to its type, with the request body, shaped like OpenAI's webhook
 * events ({@link WebhookEvent}).
 * @throws database errors (Prisma) as they come.
 */
export async function deliveriesOf(
  db: PrismaClient | Prisma.TransactionClient,
  jobId: string,
  events: RecordedEvent[],
): Promise<Prisma.WebhookDeliveryCreateManyInput[]> {
  const typed = events.flatMap((e) => {
    const type = e.type === 'status' && typeof e.data?.status === 'string' ? webhookEventOf(e.data.status) : null;
    return type ? [{ event: e, type }] : [];
  });
  if (!typed.length) return [];
  const job = await db.job.findUnique({ where: { id: jobId }, select: { projectId: true } });
  if (!job) return [];
  const hooks = await db.webhook.findMany({
    where: { projectId: job.projectId, events: { hasSome: typed.map((t) => t.type) } },
    select: { id: true, events: true },
  });
  return typed.flatMap(({ event, type }) => {
    const body: WebhookEvent = {
      object: 'event',
      id: event.id,
      type,
      created_at: Math.floor(event.createdAt.getTime() / 1000),
      data: { id: jobId },
    };
    return hooks
      .filter((h) => h.events.includes(type))
      .map((h) => ({ id: newId('delivery'), webhookId: h.id, jobId, eventType: type, payload: JSON.stringify(body), status: 'pending' }));
  });
}

/**
 * Queues the deliveries `ids` (best effort: a delivery Redis did not take stays `pending` in the database,
 * and the API's sweep queues it again).
 */
export async function queueDeliveries(redis: Redis | null, prefix: string, ids: string[]): Promise<void> {
  if (!redis || !ids.length) return;
  const queue = webhookQueue(redis, prefix);
  for (const id of ids) await enqueueDelivery(queue, id).catch(() => {});
}
