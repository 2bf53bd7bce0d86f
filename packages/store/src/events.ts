/** Job events: rows in `job_events` plus a pub/sub nudge so SSE streams push them at once. */
import type { Redis } from 'ioredis';
import type { PrismaClient } from './db.js';
import { newId } from '@edgetune/core';
import { channels } from '@edgetune/core';

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

/** Records events of one job in order and nudges subscribers. */
export async function addEvents(
  db: PrismaClient,
  redis: Redis | null,
  prefix: string,
  jobId: string,
  events: NewJobEvent[],
): Promise<void> {
  if (!events.length) return;
  await db.jobEvent.createMany({
    data: events.map((e) => ({
      id: newId('event'),
      jobId,
      type: e.type ?? 'message',
      level: e.level ?? 'info',
      message: e.message,
      data: (e.data ?? undefined) as object | undefined,
    })),
  });
  await notifyEvents(redis, prefix, jobId);
}
