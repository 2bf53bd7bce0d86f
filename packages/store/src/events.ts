/** Job events: rows in `job_events` plus a pub/sub nudge so SSE streams push them at once. */
import type { Redis } from 'ioredis';
import type { Prisma, PrismaClient } from './db.js';
import { fencedWrite, type JobFence } from './fence.js';
import { newId } from '@edgetune/core';
import { channels } from '@edgetune/core';
import { deliveriesOf, queueDeliveries, type RecordedEvent } from './webhooks.js';

/** Event types: free text, one training step's metrics, a status change. */
export type JobEventType = 'message' | 'metrics' | 'status';
export type JobEventLevel = 'info' | 'warn' | 'error';

/** What to record. */
export interface NewJobEvent {
  type?: JobEventType;
  level?: JobEventLevel;
  message: string;
  data?: Record<string, unknown> | null;
}

/** Publishes that `jobId` has new events (best effort). */
export async function notifyEvents(redis: Redis | null, prefix: string, jobId: string): Promise<void> {
  if (!redis) return;
  try {
    await redis.publish(channels(prefix).events, jobId);
  } catch {
    // subscribers also poll; a lost nudge only delays an SSE push
  }
}

/** The `job_events` rows of `events`, in order, stamped now. */
function eventRows(jobId: string, events: NewJobEvent[]) {
  const createdAt = new Date();
  return events.map((e) => ({
    id: newId('event'),
    jobId,
    createdAt,
    type: e.type ?? 'message',
    level: e.level ?? 'info',
    message: e.message,
    data: (e.data ?? undefined) as object | undefined,
  }));
}

/**
 * Writes events of one job in order inside transaction (or client) `tx`, with the webhook deliveries of its
 * terminal `status` events (data.status succeeded, failed or cancelled).
 * @returns the ids of the deliveries created, for {@link announceEvents} once the transaction commits.
 * @throws database errors (Prisma) as they come.
 */
export async function recordEvents(tx: Prisma.TransactionClient, jobId: string, events: NewJobEvent[]): Promise<string[]> {
  if (!events.length) return [];
  const rows = eventRows(jobId, events);
  const deliveries = await deliveriesOf(tx, jobId, rows as RecordedEvent[]);
  await tx.jobEvent.createMany({ data: rows });
  if (!deliveries.length) return [];
  // one delivery per webhook, job and event type: a status recorded twice is not sent twice
  const created = await tx.webhookDelivery.createManyAndReturn({ data: deliveries, skipDuplicates: true, select: { id: true } });
  return created.map((d) => d.id);
}

/** Queues the deliveries `deliveryIds` and nudges the job's listeners (best effort), after its events are committed. */
export async function announceEvents(redis: Redis | null, prefix: string, jobId: string, deliveryIds: string[]): Promise<void> {
  await queueDeliveries(redis, prefix, deliveryIds);
  await notifyEvents(redis, prefix, jobId);
}

/**
 * Records events of one job in order and nudges subscribers. A terminal `status` event (data.status
 * succeeded, failed or cancelled) also creates, in the same transaction, the job's webhook deliveries and
 * queues them (webhooks.ts): every path that ends a job records such an event, so none is missed. With
 * `fence`, the events are written only while that attempt owns the job (fence.ts).
 * @throws StaleAttemptError when `fence` does not hold; database errors (Prisma) as they come.
 */
export async function addEvents(
  db: PrismaClient,
  redis: Redis | null,
  prefix: string,
  jobId: string,
  events: NewJobEvent[],
  fence?: JobFence,
): Promise<void> {
  if (!events.length) return;
  if (fence) {
    const ids = await fencedWrite(db, jobId, fence, (tx) => recordEvents(tx, jobId, events));
    await announceEvents(redis, prefix, jobId, ids);
    return;
  }
  const rows = eventRows(jobId, events);
  const deliveries = await deliveriesOf(db, jobId, rows as RecordedEvent[]);
  if (!deliveries.length) await db.jobEvent.createMany({ data: rows });
  else {
    const [, created] = await db.$transaction([
      db.jobEvent.createMany({ data: rows }),
      db.webhookDelivery.createManyAndReturn({ data: deliveries, skipDuplicates: true, select: { id: true } }),
    ]);
    await queueDeliveries(
      redis,
      prefix,
      created.map((d) => d.id),
    );
  }
  await notifyEvents(redis, prefix, jobId);
}
