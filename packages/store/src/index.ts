/**
 * @edgetune/store: how the API and the worker reach their stores. PostgreSQL through Prisma (the system of
 * record and blob store: projects, files, jobs, events, checkpoints, adapters, policies, workers, models)
 * and Redis through BullMQ and ioredis (the queue and the event / control channels). No HTTP, no TF.js.
 */
export * from './availability.js';
export * from './db.js';
export * from './blobs.js';
export * from './events.js';
export * from './fence.js';
export * from './models.js';
export * from './policies.js';
export * from './queue.js';
export * from './retention.js';
export * from './rows.js';
export * from './workers.js';
export * from './webhooks.js';
