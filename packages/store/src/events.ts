/** Job events: rows in `job_events` plus a pub/sub nudge so SSE streams push them at once. */
import type { Redis } from 'ioredis';
import type { PrismaClient } from './db.js';
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

/**
 * Records events of one job in order and nudges subscribers. A terminal `status` event (data.status
 * succeeded, failed or cancelled) also creates, in the same transaction, the job's webhook deliveries and
 * queues them (webhooks.ts): every path that ends a job records such an event, so none is missed.
 * @throws database errors (Prisma) as they come.
 */
export async function addEvents(
  db: PrismaClient,
  redis: Redis | null,
  prefix: string,
  jobId: string,
  events: NewJobEvent[],
): Promise<void> {
  if (!events.length) return;
  const createdAt = new Date();
  const rows = events.map((e) => ({
    id: newId('event'),
    jobId,
    createdAt,
    type: e.type ?? 'message',
    level: e.level ?? 'info',
    message: e.message,
    data: (e.data ?? undefined) as object | undefined,
  }));
  const deliveries = await deliveriesOf(db, jobId, rows as RecordedEvent[]);
  if (!deliveries.length) await db.jobEvent.createMany({ data: rows });
  else {
    const [, created] = await db.$transaction([
      db.jobEvent.createMany({ data: rows }),
      // one delivery per webhook, job and event type: a status recorded twice is not sent twice
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
