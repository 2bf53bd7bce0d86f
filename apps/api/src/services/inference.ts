/**
 * Serving tuned models: which job a fine-tuned model name stands for, and the relay between a request and
 * the worker that answers it. A request goes on its base model's inference queue (core inferenceQueueName);
 * the worker publishes the answer on the request's channel (core inferenceChannel), which one Redis
 * subscriber per API process fans out to the waiting requests.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { inferenceChannel, inferenceQueueName, jobIdOfFineTunedModel, type InferenceMessage, type InferenceRequest } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';
import { ApiError } from '../errors.js';

/** Seconds a client is told to wait (`Retry-After`) when no worker serves the model. */
export const NO_WORKER_RETRY_AFTER_S = 30;

/** A fine-tuned model as a worker loads it. */
export interface ServedModelRef {
  /** the job that tuned it */
  jobId: string;
  /** its base model */
  model: string;
  /** blob of its edge bundle */
  adapterBlobId: string;
}

/** 404 in OpenAI's words and code for a model this project cannot use. */
function modelNotFound(name: string, why = ''): ApiError {
  return new ApiError(404, 'model_not_found', `The model \`${name}\` does not exist or you do not have access to it${why}`, {
    param: 'model',
  });
}

/**
 * The job behind fine-tuned model `name` (`ft:<base>:<suffix>:<job id>`) in project `projectId`.
 * @throws ApiError 404 `model_not_found` when there is no such job in the project, it has not succeeded, or
 *   it stored no edge bundle.
 */
export async function resolveServedModel(db: PrismaClient, projectId: string, name: string): Promise<ServedModelRef> {
  const jobId = jobIdOfFineTunedModel(name);
  if (!jobId) throw modelNotFound(name, ': only fine-tuned models (ft:<model>:<suffix>:<job id>) are served');
  const job = await db.job.findFirst({ where: { id: jobId, projectId }, select: { status: true, model: true, fineTunedModel: true } });
  if (!job) throw modelNotFound(name);
  if (job.status !== 'succeeded') throw modelNotFound(name, ` (job ${jobId} is ${job.status}; only a succeeded job's model is served)`);
  if (job.fineTunedModel !== name) throw modelNotFound(name, ` (job ${jobId} made ${job.fineTunedModel})`);
  const adapter = await db.adapter.findFirst({ where: { jobId, format: 'bundle' }, select: { blobId: true } });
  if (!adapter) throw modelNotFound(name, ` (job ${jobId} stored no adapter bundle)`);
  return { jobId, model: job.model, adapterBlobId: adapter.blobId };
}

/** Sends requests to the workers' inference queues and hands their answers back. */
export class InferenceRelay {
  private readonly queues = new Map<string, Queue<InferenceRequest>>();
  private readonly waiting = new Map<string, (msg: InferenceMessage) => void>();
  private sub: Redis | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private queue(model: string): Queue<InferenceRequest> {
    let q = this.queues.get(model);
    if (!q) {
      q = new Queue<InferenceRequest>(inferenceQueueName(model), { connection: this.redis, prefix: this.prefix });
      q.on('error', () => {}); // connection errors: reported by the API's Redis watch
      this.queues.set(model, q);
    }
    return q;
  }

  private subscriber(): Redis {
    if (!this.sub) {
      // offline queue on: its first SUBSCRIBE waits for this new connection's own connect (bounded by the command timeout)
      this.sub = this.redis.duplicate({ enableOfflineQueue: true });
      this.sub.on('error', () => {});
      this.sub.on('message', (channel: string, raw: string) => {
        try {
          this.waiting.get(channel)?.(JSON.parse(raw) as InferenceMessage);
        } catch {
          // not JSON: not ours
        }
      });
    }
    return this.sub;
  }

  /**
   * Queues `req` for a worker that has base model `req.model` and calls `onMessage` with what it publishes
   * (deltas when streaming, then `done` or `error`).
   * @returns a function that stops listening (call it once the answer is in or the client left).
   * @throws ApiError 503 `model_not_loaded` (with Retry-After) when no worker serves the base model;
   *   503 `queue_unavailable` when Redis fails.
   */
  async send(req: InferenceRequest, onMessage: (msg: InferenceMessage) => void): Promise<() => void> {
    const queue = this.queue(req.model);
    let workers: number;
    try {
      workers = await queue.getWorkersCount();
    } catch (e) {
      throw new ApiError(503, 'queue_unavailable', `Redis is unavailable: ${(e as Error).message}`, { headers: { 'retry-after': '5' } });
    }
    if (!workers)
      throw new ApiError(
        503,
        'model_not_loaded',
        `No worker serves base model ${req.model} now; retry when one with it in its models folder is running`,
        { param: 'model', headers: { 'retry-after': String(NO_WORKER_RETRY_AFTER_S) } },
      );
    const channel = inferenceChannel(this.prefix, req.id);
    const sub = this.subscriber();
    this.waiting.set(channel, onMessage);
    const stop = () => {
      if (this.waiting.delete(channel)) sub.unsubscribe(channel).catch(() => {});
    };
    try {
      await sub.subscribe(channel); // before the job is queued: no message can come earlier
      await queue.add('inference', req, { jobId: req.id, removeOnComplete: true, removeOnFail: true });
    } catch (e) {
      stop();
      throw new ApiError(503, 'queue_unavailable', `Redis is unavailable: ${(e as Error).message}`, { headers: { 'retry-after': '5' } });
    }
    return stop;
  }

  /** Takes `req` off its queue if no worker has taken it yet (best effort: the client that sent it left). */
  withdraw(req: InferenceRequest): void {
    this.queue(req.model)
      .remove(req.id)
      .catch(() => {});
  }

  /** Closes the queues and the subscriber. */
  async close(): Promise<void> {
    this.waiting.clear();
    this.sub?.disconnect();
    this.sub = null;
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}
