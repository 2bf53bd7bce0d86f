/** The OpenAPI 3.1 document, generated from the route schemas, at `/openapi.json`, and Swagger UI at `/docs`. */
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

/** API version reported in the OpenAPI document. */
export const API_VERSION = '0.1.0';

const DESCRIPTION =
  'Edge-LLM tuning service: upload JSONL datasets, run adaptive layer tuning jobs on base models (optionally compressed ' +
  'with a reusable layer-wise policy, planned to fit a device), stream progress, ' +
  'download the voted adapter. Authenticate with `Authorization: Bearer <API key>`. Errors are RFC 9457 application/problem+json with a stable `code`. ' +
  'POSTs accept `Idempotency-Key`: a repeat of the request gets the stored answer (`Idempotent-Replayed: true`), another request under the key 409 ' +
  '`idempotency_key_reused`, and a repeat while the first request still runs 409 `idempotency_key_in_use` (with `Retry-After`); a key whose request ' +
  'stopped (its API process died) is taken over by the next repeat EDGETUNE_IDEMPOTENCY_TIMEOUT_MS (60 s) after that request last renewed it. ' +
  'An answer is kept EDGETUNE_IDEMPOTENCY_RETENTION_MS (24 h) after its request; a key used after that is a new request.';

const TAGS = [
  { name: 'files', description: 'JSONL datasets' },
  { name: 'jobs', description: 'tuning jobs, their events, checkpoints and adapters' },
  { name: 'fine_tuning', description: "the jobs routes under OpenAI's paths (`/v1/fine_tuning/jobs`), for OpenAI clients" },
  { name: 'serving', description: 'OpenAI-compatible completions with tuned models, answered by workers' },
  { name: 'models', description: 'base models' },
  { name: 'policies', description: 'LUC compression policies (per base model and budget)' },
  { name: 'workers', description: 'worker processes and the devices jobs are planned for' },
  { name: 'webhooks', description: 'signed job status events sent to your endpoints (Standard Webhooks)' },
  { name: 'projects', description: 'projects and API keys (admin)' },
  { name: 'health', description: 'liveness and readiness' },
];

/** Registers the document generator (before the routes, which it collects as they are added) and its two routes. */
const openApi = fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'edgetune API',
          version: API_VERSION,
          description: DESCRIPTION,
          license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        },
        components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'an API key (et-...)' } } },
        security: [{ bearerAuth: [] }],
        tags: TAGS,
      },
      // named schemas appear under their $id in components.schemas
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String((json as { $id?: string }).$id ?? `def-${i}`) },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    app.get('/openapi.json', { schema: { hide: true }, config: { public: true } }, async () => app.swagger());
  },
  { name: 'openapi' },
);

export default openApi;
