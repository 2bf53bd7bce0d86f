/**
 * What the API and the worker share: configuration, the Prisma client, ids, the blob store, the queue
 * contract, job events, base model discovery and fingerprints, job configuration, execution plans (the engine's planner:
 * pure arithmetic), LUC policies and the worker registry. No Fastify, no TF.js.
 */
export * from './config.js';
export * from './db.js';
export * from './ids.js';
export * from './blobs.js';
export * from './queue.js';
export * from './events.js';
export * from './models.js';
export * from './fingerprint.js';
export * from './jobconfig.js';
export * from './status.js';
export * from './auth.js';
export * from './plan.js';
export * from './policies.js';
export * from './workers.js';
