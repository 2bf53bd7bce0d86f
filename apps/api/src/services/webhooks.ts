/**
 * Webhook endpoints of a project and their delivery log. Deliveries are created where job events are
 * recorded (@edgetune/store addEvents) and sent by the API process (../webhook-deliveries.ts).
 */
import { randomBytes } from 'node:crypto';
import { newId, type WebhookEventType } from '@edgetune/core';
import type { Prisma, PrismaClient } from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import type { WebhookCreateBody } from '../schemas.js';
import { listPage, unix } from '../serialize.js';

type WebhookRow = { id: string; url: string; events: string[]; createdAt: Date };
type DeliveryRow = Prisma.WebhookDeliveryGetPayload<{ include: { attemptLog: true } }>;

/** A new signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks asks for 24 to 64). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** A webhook as the API shows it (never its secret). */
function webhookObject(w: WebhookRow) {
  return {
    id: w.id,
    object: 'webhook_endpoint' as const,
    url: w.url,
    events: w.events as WebhookEventType[],
    created_at: unix(w.createdAt),
  };
}

/** A delivery with its attempts, oldest first. */
function deliveryObject(d: DeliveryRow) {
  return {
    id: d.id,
    object: 'webhook_delivery' as const,
    webhook_id: d.webhookId,
    event_type: d.eventType as WebhookEventType,
    fine_tuning_job_id: d.jobId,
    status: d.status as 'pending' | 'succeeded' | 'failed',
    attempts: d.attemptLog
      .sort((a, b) => a.attempt - b.attempt)
      .map((a) => ({
        attempt: a.attempt,
        status_code: a.statusCode,
        error: a.error,
        started_at: unix(a.startedAt),
        duration_ms: a.durationMs,
      })),
    next_retry_at: unix(d.nextRetryAt),
    created_at: unix(d.createdAt),
    delivered_at: unix(d.deliveredAt),
    payload: JSON.parse(d.payload) as Record<string, unknown>,
  };
}

/** Creates a webhook; the answer is the only one that shows its secret. */
export async function createWebhook(db: PrismaClient, projectId: string, body: WebhookCreateBody) {
  const row = await db.webhook.create({
    data: { id: newId('webhook'), projectId, url: body.url, events: body.events, secret: newWebhookSecret() },
  });
  return { ...webhookObject(row), secret: row.secret };
}

/** The project's webhook `id`. @throws ApiError 404 `webhook_not_found` (also for another project's) */
async function findWebhook(db: PrismaClient, projectId: string, id: string) {
  const row = await db.webhook.findFirst({ where: { id, projectId } });
  if (!row) throw notFound('webhook', id);
  return row;
}

/** The `seq` of cursor `after` in `rows`' table. @throws ApiError 400 `invalid_cursor` */
function cursorOf(found: { seq: bigint } | null, after: string, kind: string): bigint {
  if (!found) throw new ApiError(400, 'invalid_cursor', `after: no ${kind} ${after}`, { param: 'after' });
  return found.seq;
}

/** A page of the project's webhooks, newest first. @throws ApiError 400 `invalid_cursor` */
export async function listWebhooks(db: PrismaClient, projectId: string, q: { limit: number; after?: string }) {
  const before = q.after
    ? cursorOf(await db.webhook.findFirst({ where: { id: q.after, projectId }, select: { seq: true } }), q.after, 'webhook')
    : undefined;
  const rows = await db.webhook.findMany({
    where: { projectId, ...(before !== undefined ? { seq: { lt: before } } : {}) },
    orderBy: { seq: 'desc' },
    take: q.limit + 1,
  });
  return listPage(rows.map(webhookObject), q.limit);
}

/** A webhook. @throws ApiError 404 `webhook_not_found` */
export async function getWebhook(db: PrismaClient, projectId: string, id: string) {
  return webhookObject(await findWebhook(db, projectId, id));
}

/** Deletes a webhook and its delivery log; queued deliveries are dropped. @throws ApiError 404 `webhook_not_found` */
export async function deleteWebhook(db: PrismaClient, projectId: string, id: string) {
  const r = await db.webhook.deleteMany({ where: { id, projectId } });
  if (!r.count) throw notFound('webhook', id);
  return { id, object: 'webhook_endpoint' as const, deleted: true };
}

/**
 * A page of a webhook's deliveries, newest first, each with its attempts.
 * @throws ApiError 404 `webhook_not_found`, 400 `invalid_cursor`
 */
export async function listDeliveries(db: PrismaClient, projectId: string, id: string, q: { limit: number; after?: string }) {
  await findWebhook(db, projectId, id);
  const before = q.after
    ? cursorOf(await db.webhookDelivery.findFirst({ where: { id: q.after, webhookId: id }, select: { seq: true } }), q.after, 'delivery')
    : undefined;
  // One snapshot: the deliveries and their attempts are two queries, and an attempt (with its delivery's new
  // state) may commit between them.
  const rows = await db.$transaction(
    (tx) =>
      tx.webhookDelivery.findMany({
        where: { webhookId: id, ...(before !== undefined ? { seq: { lt: before } } : {}) },
        orderBy: { seq: 'desc' },
        take: q.limit + 1,
        include: { attemptLog: true },
      }),
    { isolationLevel: 'RepeatableRead' },
  );
  return listPage(rows.map(deliveryObject), q.limit);
}
