/**
 * The sender of webhook deliveries: a BullMQ worker on the `webhooks` queue, run by the API process (central
 * and always up; workers may be many, on other boxes, and come and go). Started by server.ts, not by buildApp,
 * which stays inert for the OpenAPI generator.
 *
 * Each attempt POSTs the delivery's body signed with `standardwebhooks` (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature`), records it in `webhook_attempts`, and on anything but a 2xx (or after
 * `webhookTimeoutMs`) moves the queue job back to delayed for `webhookBackoffMs * 2^(attempt - 1)`, until
 * `webhookMaxAttempts` attempts have failed (the delivery is then `failed`). A sweep re-queues `pending`
 * deliveries the queue does not hold (Redis was down when the event was recorded, or lost the job).
 */
import { DelayedError, type Job, Worker } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { WEBHOOK_QUEUE_NAME, type Config, type WebhookQueueData } from '@edgetune/core';
import { enqueueDelivery, isStoreUnavailable, webhookQueue, type PrismaClient } from '@edgetune/store';

/** How often the sweep looks for pending deliveries the queue lost, ms. */
const SWEEP_INTERVAL_MS = 60_000;
/** Requests sent at once. */
const CONCURRENCY = 8;

/** What the sender needs. */
export interface DeliveryDeps {
  config: Pick<Config, 'queuePrefix' | 'webhookMaxAttempts' | 'webhookBackoffMs' | 'webhookTimeoutMs'>;
  db: PrismaClient;
  redis: Redis;
  log: FastifyBaseLogger;
}

/** The outcome of one request: the receiver's status code, or why there is none. */
interface AttemptResult {
  statusCode: number | null;
  error: string | null;
}

/** Delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed, ms: `baseMs * 2^(attempt - 1)`. */
export function retryDelayMs(attempt: number, baseMs: number): number {
  return baseMs * 2 ** (attempt - 1);
}

/**
 * POSTs `body` to `url` as Standard Webhooks message `msgId`, signed with `secret` (`whsec_...`) at the
 * current time; gives up after `timeoutMs`. Never throws: a failure is in the result.
 */
export async function sendSigned(url: string, secret: string, msgId: string, body: string, timeoutMs: number): Promise<AttemptResult> {
  const now = new Date();
  const headers = {
    'content-type': 'application/json',
    'user-agent': 'edgetune-webhooks',
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(msgId, now, body),
  };
  try {
    const res = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    const ok = res.status >= 200 && res.status < 300;
    return { statusCode: res.status, error: ok ? null : `HTTP ${res.status}` };
  } catch (e) {
    const err = e as Error & { cause?: Error };
    if (err.name === 'TimeoutError') return { statusCode: null, error: `no answer within ${timeoutMs} ms` };
    return { statusCode: null, error: err.cause?.message ?? err.message };
  }
}

/**
 * One attempt of queue job `job`'s delivery; on failure with attempts left, moves the job back to delayed
 * (BullMQ's DelayedError) until its next retry.
 */
async function attempt(deps: DeliveryDeps, job: Job<WebhookQueueData>, token: string | undefined): Promise<void> {
  const { db, config } = deps;
  const id = job.data.deliveryId;
  const d = await db.webhookDelivery.findUnique({ where: { id }, include: { webhook: { select: { url: true, secret: true } } } });
  if (d?.status !== 'pending') return; // its webhook was deleted, or a duplicate queue job
  const n = d.attempts + 1;
  const startedAt = new Date();
  const r = await sendSigned(d.webhook.url, d.webhook.secret, d.id, d.payload, config.webhookTimeoutMs);
  const ok = r.error === null;
  const retryAt = !ok && n < config.webhookMaxAttempts ? new Date(Date.now() + retryDelayMs(n, config.webhookBackoffMs)) : null;
  await db.$transaction([
    db.webhookAttempt.create({
      data: {
        deliveryId: id,
        attempt: n,
        statusCode: r.statusCode,
        error: r.error,
        startedAt,
        durationMs: Date.now() - startedAt.getTime(),
      },
    }),
    db.webhookDelivery.update({
      where: { id },
      data: {
        attempts: n,
        status: ok ? 'succeeded' : retryAt ? 'pending' : 'failed',
        nextRetryAt: retryAt,
        deliveredAt: ok ? new Date() : null,
      },
    }),
  ]);
  if (!ok) deps.log.warn(`webhook delivery ${id} attempt ${n} failed: ${r.error}${retryAt ? '' : ' (no attempts left)'}`);
  if (retryAt) {
    await job.moveToDelayed(retryAt.getTime(), token);
    throw new DelayedError();
  }
}

/** Queues every `pending` delivery again (a queued, delayed or running one is left as it is), each at its next retry. */
async function sweep(deps: DeliveryDeps): Promise<void> {
  const queue = webhookQueue(deps.redis, deps.config.queuePrefix);
  const rows = await deps.db.webhookDelivery.findMany({
    where: { status: 'pending' },
    select: { id: true, nextRetryAt: true },
    take: 1000,
  });
  for (const r of rows) await enqueueDelivery(queue, r.id, Math.max(0, (r.nextRetryAt?.getTime() ?? 0) - Date.now()));
}

/**
 * Starts sending webhook deliveries from the `webhooks` queue, and the sweep (at once, then every minute).
 * @returns a stop function (waits for requests under way).
 */
export function startWebhookDeliveries(deps: DeliveryDeps): { stop: () => Promise<void> } {
  const worker = new Worker<WebhookQueueData>(WEBHOOK_QUEUE_NAME, (job, token) => attempt(deps, job, token), {
    connection: deps.redis,
    prefix: deps.config.queuePrefix,
    concurrency: CONCURRENCY,
  });
  // a store outage is logged once by the API's store watch, not at every reconnection attempt
  worker.on('error', (e) => {
    if (!isStoreUnavailable(e)) deps.log.warn(`webhook sender: ${e.message}`);
  });
  worker.on('failed', (job, e) => deps.log.warn(`webhook delivery ${job?.data.deliveryId}: ${e.message}`));
  const runSweep = () => sweep(deps).catch((e: Error) => deps.log.warn(`webhook sweep: ${e.message}`));
  void runSweep();
  const timer = setInterval(runSweep, SWEEP_INTERVAL_MS);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await worker.close();
    },
  };
}
