/**
 * The Fastify app: `/v1` REST API (bearer keys, problem+json errors, SSE events), `/healthz`, `/readyz`,
 * the generated OpenAPI 3.1 document at `/openapi.json`, Swagger UI at `/docs` and the dashboard at `/dashboard/`.
 * Never loads TF.js.
 * Infrastructure lives in `plugins/` (dependencies as decorators, errors, auth, OpenAPI), routes by
 * resource in `routes/`, their queries in `services/`.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import deps, { type DepsOptions } from './plugins/deps.js';
import errorHandling, { clientErrorHandler, frameworkErrors } from './plugins/errors.js';
import auth from './plugins/auth.js';
import rateLimits from './plugins/rate-limit.js';
import openApi from './plugins/swagger.js';
import metrics from './plugins/metrics.js';
import { NAMED_SCHEMAS } from './schemas.js';
import { rejectUnstorableText, validatorCompiler } from './validation.js';
import health from './routes/health.js';
import files from './routes/files.js';
import jobs from './routes/jobs/index.js';
import fineTuning from './routes/fine-tuning.js';
import completions from './routes/completions.js';
import models from './routes/models.js';
import policies from './routes/policies.js';
import projects from './routes/projects.js';
import recommendations from './routes/recommendations.js';
import workers from './routes/workers.js';
import webhooks from './routes/webhooks.js';
import dashboard from './routes/dashboard.js';

/** Inputs of {@link buildApp}. The caller owns (and closes) db, redis and queue. */
export interface BuildAppOptions extends DepsOptions {
  logger?: FastifyServerOptions['logger'];
}

/** Builds the app (not listening). */
export async function buildApp(o: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: o.logger ?? false,
    genReqId: () => `req_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
    frameworkErrors, // router and HTTP parser errors answer problem+json too
    clientErrorHandler,
    // close ends event streams too (clients resume with Last-Event-ID) instead of waiting for them
    forceCloseConnections: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(deps, { config: o.config, db: o.db, redis: o.redis, queue: o.queue });
  await app.register(errorHandling);
  app.removeContentTypeParser('text/plain'); // JSON or multipart only: anything else is 415
  await app.register(rateLimits); // before auth: a flood is refused before its key is looked up
  await app.register(auth);
  for (const s of NAMED_SCHEMAS) app.addSchema(s);
  app.setValidatorCompiler(validatorCompiler(NAMED_SCHEMAS));
  app.addHook('preValidation', rejectUnstorableText); // NUL and unpaired surrogates: 400, never a database error
  await app.register(multipart, { limits: { fileSize: o.config.maxFileBytes } });
  await app.register(openApi);
  await app.register(metrics); // GET /metrics and the request timer (before the routes it times)

  // registration order is the order of the paths in the OpenAPI document
  await app.register(health);
  await app.register(files);
  await app.register(fineTuning); // /v1/fine_tuning/jobs...: copies the /v1/jobs routes as they register
  await app.register(jobs);
  await app.register(completions);
  await app.register(models);
  await app.register(policies);
  await app.register(projects);
  await app.register(recommendations);
  await app.register(workers);
  await app.register(webhooks);
  await app.register(dashboard); // hidden from the OpenAPI document
  return app;
}
