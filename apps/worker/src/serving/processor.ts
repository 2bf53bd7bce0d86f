/**
 * BullMQ sandboxed processor of a base model's inference queue. BullMQ keeps the child process between
 * requests, so the engine and an LRU of loaded adapters stay warm: the first request for a fine-tuned
 * model fetches its edge bundle from the blob store, unpacks it and loads it on a fresh copy of the base
 * model (an adapter changes the model's weights); later requests reuse it. The answer is published on the
 * request's Redis channel, text deltas first when it streams.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SandboxedJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { inferenceChannel, loadConfig, makeScratchDir, type Config, type InferenceMessage, type InferenceRequest } from '@edgetune/core';
import { blobToFile, createPrisma, redisConnection, type PrismaClient } from '@edgetune/store';
import { unpackTar } from '../pack.js';
import { answer, InferenceRequestError, type ServedModel } from './answer.js';

/** Fine-tuned models a serving process keeps loaded (each is a full copy of its base model). */
export const SERVED_MODELS_CACHED = 2;

let ctx: { config: Config; db: PrismaClient; redis: Redis } | null = null;
let engine: Promise<typeof import('@edgetune/engine')> | null = null;
/** job id -> loaded model, least recently used first */
const cache = new Map<string, Promise<ServedModel>>();

// The parent worker died (e.g. kill -9): stop at once; its requests time out in the API.
process.once('disconnect', () => process.exit(1));

function context(): NonNullable<typeof ctx> {
  if (ctx) return ctx;
  const config = loadConfig();
  const redis = redisConnection(config.redisUrl);
  redis.on('error', () => {}); // a Redis outage: the parent worker logs it once
  ctx = { config, db: createPrisma(config.databaseUrl, { max: 2 }), redis };
  return ctx;
}

async function loadEngine(): Promise<typeof import('@edgetune/engine')> {
  const m = await import('@edgetune/engine');
  await m.initBackend({ quiet: process.env.EDGETUNE_QUIET === '1' });
  return m;
}

/** Loads the job's bundle (blob -> tar -> folder) on the base model; the folder is removed once loaded. */
async function loadServed(req: InferenceRequest): Promise<ServedModel> {
  const { config, db } = context();
  const m = await (engine ??= loadEngine());
  const modelDir = join(config.modelsDir, req.model);
  await mkdir(config.workDir, { recursive: true });
  const dir = await makeScratchDir(config.workDir, 'serve');
  try {
    const tarFile = join(dir, 'bundle.tar');
    await blobToFile(db, req.adapterBlobId, tarFile);
    await unpackTar(tarFile, join(dir, 'bundle'));
    const loaded = m.loadWithAdapter(modelDir, join(dir, 'bundle'));
    return { ...loaded, tok: await m.loadTokenizer(modelDir) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The loaded model of `req`, from the LRU or loaded now (evicting and disposing the least recently used). */
async function served(req: InferenceRequest): Promise<ServedModel> {
  let p = cache.get(req.jobId);
  if (p) cache.delete(req.jobId);
  else p = loadServed(req);
  cache.set(req.jobId, p);
  p.catch(() => cache.delete(req.jobId));
  while (cache.size > SERVED_MODELS_CACHED) {
    const [oldest, old] = cache.entries().next().value!;
    cache.delete(oldest);
    old.then((o) => o.model.dispose()).catch(() => {});
  }
  return p;
}

/** The problem an error becomes: a bad request (400) or a failure of this worker (500). */
function errorMessage(e: Error): InferenceMessage {
  if (e instanceof InferenceRequestError) return { type: 'error', status: 400, code: e.code, message: e.message, param: e.param };
  return { type: 'error', status: 500, code: 'inference_failed', message: e.message, param: null };
}

/** Answers one request; never throws (the outcome goes to the request's channel). */
export default async function process_(job: SandboxedJob<InferenceRequest>): Promise<void> {
  const { config, redis } = context();
  const req = job.data;
  const channel = inferenceChannel(config.queuePrefix, req.id);
  const publish = (msg: InferenceMessage) => redis.publish(channel, JSON.stringify(msg));
  try {
    const m = await served(req);
    const done = answer(await engine!, m, req, (text) => {
      if (req.stream && text) void publish({ type: 'delta', text });
    });
    await publish(done);
  } catch (e) {
    console.error(`[serving ${req.model}] request ${req.id} failed: ${(e as Error).stack ?? e}`);
    await publish(errorMessage(e as Error));
  }
}
