/**
 * `/v1/recommendations`: the advisor. Create (estimate or measure), list, get, and start a candidate's job.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { authOf } from '../plugins/auth.js';
import { idempotencyKeyOf, idempotencyOptions, idempotent, requestHash } from '../idempotency.js';
import {
  createRecommendation,
  getRecommendation,
  listRecommendations,
  startRecommendation,
  type RecommendationDeps,
} from '../services/recommendations.js';
import {
  IdParams,
  Job,
  listQuery,
  problems,
  RecommendationCreate,
  RecommendationList,
  RecommendationObject,
  RecommendationStart,
  ref,
} from '../schemas.js';

const recommendations: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  const deps: RecommendationDeps = { db, redis: app.redis, queue: app.queue, config: app.config };
  const idem = idempotencyOptions(app.config);

  app.post(
    '/v1/recommendations',
    {
      schema: {
        operationId: 'createRecommendation',
        summary: 'Advise what to run on a device for a training file',
        tags: ['recommendations'],
        description:
          'Candidates are every base model (or `models`) x LUC compression (dense, 8 and 4 bits for the edge_llm methods) x method (edge_llm, lora, rag, rag_edge_llm, rag_lora) x LoRA rank. ' +
          "Each is planned for the device (memory and time forecast: left out with the planner's reason when it does not fit, or when even its fewest useful steps overrun `time_budget_s`), " +
          'given the steps at which validation peaked on the guidelines bench (capped by the time budget), and scored: expected metric = baseline + gain x (1 - baseline), the gain its method closed ' +
          'on the bench at this training-set size. Each candidate cites the guidelines (Qin et al., arXiv 2406.03777) and bench rows it rests on. ' +
          '`mode: "estimate"` answers at once (201, `succeeded`); `mode: "measure"` (needs `validation_file`) also creates probe jobs for the top candidates, each on an equal share of the time budget ' +
          'with early stopping, with `metadata.recommendation_id` (status `measuring`; once all have finished they are ranked by their measured validation metric). ' +
          'Without fitted rules (`npm run bench -- --guidelines`) the advisor answers 503 `advisor_rules_missing`. Supports Idempotency-Key.',
        body: ref(RecommendationCreate),
        response: {
          201: ref(RecommendationObject),
          ...problems(400, 401, 409, [503, 'No fitted advisor rules (`advisor_rules_missing`), or a dependency is unavailable']),
        },
      },
    },
    async (req, reply) => {
      const { projectId } = authOf(req);
      return idempotent(
        db,
        req,
        reply,
        requestHash({ recommendation: req.body }),
        async () => ({ status: 201, body: await createRecommendation(deps, projectId, req.body) }),
        idem,
      );
    },
  );

  app.get(
    '/v1/recommendations',
    {
      schema: {
        operationId: 'listRecommendations',
        summary: 'List recommendations (newest first)',
        tags: ['recommendations'],
        querystring: listQuery({}),
        response: { 200: ref(RecommendationList), ...problems(400, 401) },
      },
    },
    async (req) => listRecommendations(db, authOf(req).projectId, { limit: req.query.limit ?? 20, after: req.query.after }),
  );

  app.get(
    '/v1/recommendations/:id',
    {
      schema: {
        operationId: 'getRecommendation',
        summary: 'Get a recommendation (measure: the probes ranked by their measured validation metric once finished)',
        tags: ['recommendations'],
        params: IdParams,
        response: { 200: ref(RecommendationObject), ...problems(401, 404) },
      },
    },
    async (req) => getRecommendation(db, authOf(req).projectId, req.params.id),
  );

  app.post(
    '/v1/recommendations/:id/start',
    {
      schema: {
        operationId: 'startRecommendation',
        summary: "Create the job of a recommendation's candidate",
        tags: ['recommendations'],
        description:
          "Creates the job of `candidate` (default `best_candidate`) on the recommendation's files and device exactly as POST /v1/jobs would (same validation, plan and errors, " +
          'e.g. 422 `plan_does_not_fit`), with `metadata.recommendation_id`. Supports Idempotency-Key.',
        params: IdParams,
        body: ref(RecommendationStart),
        response: {
          201: ref(Job),
          ...problems(
            400,
            401,
            404,
            409,
            [422, "The job does not fit its memory budget or the backend's heap ceiling (`plan_does_not_fit`)"],
            503,
          ),
        },
      },
    },
    async (req, reply) => {
      const { projectId } = authOf(req);
      return idempotent(
        db,
        req,
        reply,
        requestHash({ start: req.params.id, candidate: req.body?.candidate ?? null }),
        async () => ({
          status: 201,
          body: await startRecommendation(deps, projectId, req.params.id, req.body?.candidate, idempotencyKeyOf(req)),
        }),
        idem,
      );
    },
  );
};

export default recommendations;
