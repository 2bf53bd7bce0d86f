/**
 * The Fastify app: `/v1` REST API (bearer keys, problem+json errors, SSE events), `/healthz`, `/readyz`,
 * the generated OpenAPI 3.1 document at `/openapi.json` and Swagger UI at `/docs`. Never loads TF.js.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';
import type { QueueJobData } from '@edgetune/core';
import { registerErrorHandling } from './errors.js';
import { registerAuth } from './auth.js';
import { EventHub } from './hub.js';
import { NAMED_SCHEMAS } from './schemas.js';
import { validatorCompiler } from './validation.js';
import files from './routes/files.js';
import jobs from './routes/jobs.js';
import models from './routes/models.js';
import policies from './routes/policies.js';
import projects from './routes/projects.js';
import workers from './routes/workers.js';
import health from './routes/health.js';

/** API version reported in the OpenAPI document. */
export const API_VERSION = '0.1.0';

/** What the routes use. */
export interface AppDeps {
  config: Config;
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  hub: EventHub;
  /** finishers of open SSE streams (ended when the app closes) */
  streams: Set<() => void>;
}

/** Inputs of {@link buildApp}. The caller owns (and closes) db, redis and queue. */
export interface BuildAppOptions {
  config: Config;
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  logger?: FastifyServerOptions['logger'];
}

/** Builds the app (not listening). */
export async function buildApp(o: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: o.logger ?? false,
    genReqId: () => `req_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
  }).withTypeProvider<TypeBoxTypeProvider>();
  const deps: AppDeps = { config: o.config, db: o.db, redis: o.redis, queue: o.queue, hub: new EventHub(o.redis, o.config.queuePrefix), streams: new Set() };

  registerErrorHandling(app);
  app.removeContentTypeParser('text/plain'); // JSON or multipart only: anything else is 415
  registerAuth(app, o.db);
  for (const s of NAMED_SCHEMAS) app.addSchema(s);
  app.setValidatorCompiler(validatorCompiler(NAMED_SCHEMAS));
  await app.register(multipart, { limits: { fileSize: o.config.maxFileBytes } });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'edgetune API',
        version: API_VERSION,
        description: 'Edge-LLM tuning service: upload JSONL datasets, run adaptive layer tuning jobs on base models (optionally compressed '
          + 'with a reusable layer-wise policy, planned to fit a device), stream progress, '
          + 'download the voted adapter. Authenticate with `Authorization: Bearer <API key>`. Errors are RFC 9457 application/problem+json with a stable `code`. '
          + 'POSTs accept `Idempotency-Key`: a repeat of the request gets the stored answer (`Idempotent-Replayed: true`), another request under the key 409 '
          + '`idempotency_key_reused`, and a repeat while the first request still runs 409 `idempotency_key_in_use` (with `Retry-After`); a key whose request '
          + 'stopped (its API process died) is taken over by the next repeat EDGETUNE_IDEMPOTENCY_TIMEOUT_MS (60 s) after that request last renewed it. '
          + 'An answer is kept EDGETUNE_IDEMPOTENCY_RETENTION_MS (24 h) after its request; a key used after that is a new request.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'an API key (et-...)' } } },
      security: [{ bearerAuth: [] }],
      tags: [
        { name: 'files', description: 'JSONL datasets' },
        { name: 'jobs', description: 'tuning jobs, their events, checkpoints and adapters' },
        { name: 'models', description: 'base models' },
        { name: 'policies', description: 'LUC compression policies (per base model and budget)' },
        { name: 'workers', description: 'worker processes and the devices jobs are planned for' },
        { name: 'projects', description: 'projects and API keys (admin)' },
        { name: 'health', description: 'liveness and readiness' },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String((json as { $id?: string }).$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true }, config: { public: true } }, async () => app.swagger());

  await app.register(health, deps);
  await app.register(files, deps);
  await app.register(jobs, deps);
  await app.register(models, deps);
  await app.register(policies, deps);
  await app.register(projects, deps);
  await app.register(workers, deps);

  app.addHook('preClose', async () => {
    for (const finish of [...deps.streams]) finish();
  });
  app.addHook('onClose', async () => {
    await deps.hub.close();
  });
  return app;
}
