/**
 * `/v1/policies`: LUC compression policies. A policy belongs to a base model and a budget (not to a
 * project): the first compressed job with that model and budget stores it, every later one reuses it.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { authOf } from '../plugins/auth.js';
import { getPolicy, listPolicies } from '../services/policies.js';
import { IdParams, listQuery, PolicyList, PolicyObject, problems, ref } from '../schemas.js';

const policies: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/policies',
    {
      schema: {
        operationId: 'listPolicies',
        summary: 'List compression policies (newest first)',
        tags: ['policies'],
        description:
          'LUC policies: per-layer sparsity and bit-widths of a base model for a budget, with the sensitivities they came from. Filter: `model`.',
        querystring: listQuery({ model: Type.Optional(Type.String({ description: 'base model id' })) }),
        response: { 200: ref(PolicyList), ...problems(400, 401) },
      },
    },
    async (req) =>
      listPolicies(db, authOf(req).projectId, { limit: req.query.limit ?? 20, after: req.query.after, model: req.query.model }),
  );

  app.get(
    '/v1/policies/:id',
    {
      schema: {
        operationId: 'getPolicy',
        summary: 'Get a compression policy',
        tags: ['policies'],
        params: IdParams,
        response: { 200: ref(PolicyObject), ...problems(401, 404) },
      },
    },
    async (req) => getPolicy(db, authOf(req).projectId, req.params.id),
  );
};

export default policies;
