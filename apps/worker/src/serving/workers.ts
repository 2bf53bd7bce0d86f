/**
 * Serving: one BullMQ worker per base model this worker has, on that model's inference queue
 * (core inferenceQueueName), one request at a time, in a sandboxed child process that BullMQ keeps between
 * requests (serving/processor.ts). The child is apart from the tuning jobs' children, so a running tuning
 * job does not hold requests back: both share the CPU cores, and each runs slower meanwhile.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import { inferenceQueueName, type Config, type InferenceRequest } from '@edgetune/core';
import { isStoreUnavailable, redisConnection } from '@edgetune/store';

/**
 * Starts consuming the inference queues of `models` (base model ids).
 * @returns the BullMQ workers (close them to stop; a request being answered finishes first).
 */
export async function startServing(
  config: Config,
  models: readonly string[],
  log: (line: string) => void,
): Promise<Worker<InferenceRequest>[]> {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const processorFile = fileURLToPath(new URL(`./processor.${ext}`, import.meta.url));
  const workers = models.map((model) => {
    const w = new Worker<InferenceRequest>(inferenceQueueName(model), processorFile, {
      connection: redisConnection(config.redisUrl),
      prefix: config.queuePrefix,
      concurrency: 1,
      useWorkerThreads: false,
      // an answer is published on its channel; the queue keeps nothing
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 0 },
    });
    w.on('error', (err) => {
      if (!isStoreUnavailable(err)) log(`[serving ${model}] ${err.message}`); // outages: logged by the worker's store watches
    });
    return w;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return workers;
}
