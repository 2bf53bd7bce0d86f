/**
 * `/v1/policies`: LUC compression policies. A policy belongs to a base model and a budget (not to a
 * project): the first compressed job with that model and budget stores it, every later one reuses it.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../app.js';
import { ApiError, notFound } from '../errors.js';
import { authOf } from '../auth.js';
import { policyObject } from '@edgetune/store';
import { listPage } from '../serialize.js';
import { IdParams, listQuery, PolicyList, PolicyObject, problems, ref } from '../schemas.js';

const policies: FastifyPluginAsyncTypebox<AppDeps> = async (app, { db }) => {
  /** jobs of the project that used each policy */
  const jobCounts = async (projectId: string, ids: string[]): Promise<Map<string, number>> => {
    const rows = ids.length ? await db.job.groupBy({ by: ['policyId'], where: { projectId, policyId: { in: ids } }, _count: { _all: true } }) : [];
    return new Map(rows.map((r) => [r.policyId!, r._count._all]));
  };

  app.get('/v1/policies', {
    schema: {
      operationId: 'listPolicies', summary: 'List compression policies (newest first)', tags: ['policies'],
      description: 'LUC policies: per-layer sparsity and bit-widths of a base model for a budget, with the sensitivities they came from. Filter: `model`.',
      querystring: listQuery({ model: Type.Optional(Type.String({ description: 'base model id' })) }),
      response: { 200: ref(PolicyList), ...problems(400, 401) },
    },
  }, async (req) => {
    const { projectId } = authOf(req);
    const limit = req.query.limit ?? 20;
    let before: bigint | undefined;
    if (req.query.after) {
      const a = await db.policy.findUnique({ where: { id: req.query.after }, select: { seq: true } });
      if (!a) throw new ApiError(400, 'invalid_cursor', `after: no policy ${req.query.after}`, { param: 'after' });
      before = a.seq;
    }
    const rows = await db.policy.findMany({
      where: { ...(req.query.model ? { baseModelId: req.query.model } : {}), ...(before !== undefined ? { seq: { lt: before } } : {}) },
      orderBy: { seq: 'desc' }, take: limit + 1,
    });
    const counts = await jobCounts(projectId, rows.map((r) => r.id));
    return listPage(rows.map((r) => policyObject(r, counts.get(r.id) ?? 0)), limit);
  });

  app.get('/v1/policies/:id', {
    schema: {
      operationId: 'getPolicy', summary: 'Get a compression policy', tags: ['policies'], params: IdParams,
      response: { 200: ref(PolicyObject), ...problems(401, 404) },
    },
  }, async (req) => {
    const { projectId } = authOf(req);
    const row = await db.policy.findUnique({ where: { id: req.params.id } });
    if (!row) throw notFound('policy', req.params.id);
    return policyObject(row, (await jobCounts(projectId, [row.id])).get(row.id) ?? 0);
  });
};

export default policies;
