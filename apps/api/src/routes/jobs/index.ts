/**
 * `/v1/jobs`: create (or plan), list, get, cancel; then the job's events (JSON pages and SSE) and its
 * checkpoints and adapter downloads. Registered in this order, which is that of the OpenAPI paths.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { JOB_STATUSES } from '@edgetune/core';
import { authOf } from '../../plugins/auth.js';
import { idempotencyKeyOf, idempotencyOptions, idempotent, requestHash } from '../../idempotency.js';
import { cancelJob, createJob, deleteJob, dryRunJob, getJob, listJobs, type JobDeps } from '../../services/jobs.js';
import { DeletedJob, IdParams, Job, JobCreate, JobCreateQuery, JobDryRun, JobList, listQuery, problems, ref } from '../../schemas.js';
import events from './events.js';
import artifacts from './artifacts.js';

/** `metadata[key]=value` query parameters: the pairs a listed job must hold. */
function metadataFilter(query: Record<string, unknown>): [string, string][] {
  return Object.entries(query).flatMap(([k, v]) => {
    const m = /^metadata\[(.+)\]$/.exec(k);
    return m ? [[m[1], String(v)] as [string, string]] : [];
  });
}

const jobs: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  const deps: JobDeps = { db, redis: app.redis, queue: app.queue, config: app.config };
  const idem = idempotencyOptions(app.config);

  app.post(
    '/v1/jobs',
    {
      schema: {
        operationId: 'createJob',
        summary: 'Create a tuning job (or plan one: ?dry_run=true)',
        tags: ['jobs'],
        description:
          'Creates a tuning job on a base model: `method.type` `edge_llm` (Edge-LLM adaptive layer tuning, optionally on a model compressed first: `method.edge_llm.compression`, LUC), ' +
          '`lora` (LoRA on every layer), `rag` (no training: BM25 retrieval of training examples into each prompt), or `rag_edge_llm` / `rag_lora` (tuning on retrieval-augmented prompts). ' +
          '`hyperparameters.time_budget_s` bounds training time and `hyperparameters.early_stopping` (needs a `validation_file`, else 400 `validation_file_required`) stops it when the validation metric stops improving; ' +
          'both keep the best-on-validation weights and report `result.validation_curve`, `best_step` and `stopped_by`. ' +
          '"auto" values are resolved and echoed back. The job is planned for its `device` (default: the worker\'s own memory and cores): ' +
          'micro-batch, gradient accumulation, exit windows, prefix caching, with a memory and time forecast (`plan`); a job whose plan cannot fit ' +
          "its memory budget, or whose TF.js tensors would exceed the backend's heap ceiling (wasm: 4294901760 bytes), is refused with 422 " +
          '`plan_does_not_fit` (the figures in the message, the plan in the problem) before anything is created; so is a job whose forecast training time or checkpoint storage ' +
          "exceeds the service's limits (EDGETUNE_MAX_JOB_SECONDS, EDGETUNE_MAX_CHECKPOINT_BYTES): 422 `job_exceeds_limits`, each limit with what the job needs in `limits`. " +
          '`?dry_run=true` returns the plan (200, object `job.plan`, also when it does not fit) and creates nothing. Supports Idempotency-Key: a retry that takes over the key of a request whose API process died ' +
          'answers the job that request created (accepting it if it had not been queued yet) rather than creating a second one.',
        querystring: JobCreateQuery,
        body: ref(JobCreate),
        response: {
          200: ref(JobDryRun),
          201: ref(Job),
          ...problems(
            400,
            401,
            409,
            [
              422,
              "The job does not fit its memory budget or the backend's heap ceiling (`plan_does_not_fit`; the forecast is in `plan`), or exceeds the service's time or checkpoint storage limits (`job_exceeds_limits`; each in `limits`)",
            ],
            503,
          ),
        },
      },
    },
    async (req, reply) => {
      const { projectId } = authOf(req);
      if (req.query.dry_run) return reply.code(200).send(await dryRunJob(deps, projectId, req.body));
      return idempotent(
        db,
        req,
        reply,
        requestHash(req.body),
        async () => ({ status: 201, body: await createJob(deps, projectId, req.body, idempotencyKeyOf(req)) }),
        idem,
      );
    },
  );

  app.get(
    '/v1/jobs',
    {
      schema: {
        operationId: 'listJobs',
        summary: 'List jobs (newest first)',
        tags: ['jobs'],
        description: 'Filters: `status`, `model`, and `metadata[key]=value` (any number, all must match).',
        querystring: listQuery(
          {
            status: Type.Optional(Type.Enum(JOB_STATUSES)),
            model: Type.Optional(Type.String()),
          },
          { patternProperties: { '^metadata\\[.+\\]$': Type.String() } },
        ),
        response: { 200: ref(JobList), ...problems(400, 401) },
      },
    },
    async (req) => {
      const { limit = 20, after, status, model } = req.query;
      return listJobs(db, authOf(req).projectId, { limit, after, status, model, metadata: metadataFilter(req.query) });
    },
  );

  app.get(
    '/v1/jobs/:id',
    {
      schema: {
        operationId: 'getJob',
        summary: 'Get a job (status, progress, ETA, latest metrics, result, error)',
        tags: ['jobs'],
        params: IdParams,
        response: { 200: ref(Job), ...problems(401, 404) },
      },
    },
    async (req) => getJob(db, authOf(req).projectId, req.params.id),
  );

  app.delete(
    '/v1/jobs/:id',
    {
      schema: {
        operationId: 'deleteJob',
        summary: 'Delete a finished job',
        tags: ['jobs'],
        params: IdParams,
        description:
          'Deletes a succeeded, failed or cancelled job with its events, checkpoints and adapters, and frees their stored bytes. ' +
          'A job that is queued, running or being cancelled is refused with 409 `job_not_finished`: cancel it first.',
        response: { 200: ref(DeletedJob), ...problems(401, 404, 409) },
      },
    },
    async (req) => deleteJob(db, authOf(req).projectId, req.params.id),
  );

  app.post(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        operationId: 'cancelJob',
        summary: 'Cancel a job',
        tags: ['jobs'],
        params: IdParams,
        description:
          'A queued job is cancelled at once; a running job goes to `cancelling` and reaches `cancelled` within seconds. 409 for finished jobs. Supports Idempotency-Key.',
        response: { 200: ref(Job), ...problems(401, 404, 409) },
      },
    },
    async (req, reply) => {
      const { projectId } = authOf(req);
      return idempotent(
        db,
        req,
        reply,
        requestHash({ cancel: req.params.id }),
        async () => ({ status: 200, body: await cancelJob(deps, projectId, req.params.id) }),
        idem,
      );
    },
  );

  await app.register(events);
  await app.register(artifacts);
};

export default jobs;
