/** `/v1/models`: base models this installation has (reported by the API host and the workers). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { notFound } from '../errors.js';
import { modelObject } from '../serialize.js';
import { IdParams, ModelList, ModelObject, problems, ref } from '../schemas.js';

const models: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  app.get(
    '/v1/models',
    {
      schema: {
        operationId: 'listModels',
        summary: 'List base models and their training limits',
        tags: ['models'],
        response: { 200: ref(ModelList), ...problems(401) },
      },
    },
    async () => ({ object: 'list' as const, data: (await db.baseModel.findMany({ orderBy: { id: 'asc' } })).map(modelObject) }),
  );

  app.get(
    '/v1/models/:id',
    {
      schema: {
        operationId: 'getModel',
        summary: 'Get a base model',
        tags: ['models'],
        params: IdParams,
        response: { 200: ref(ModelObject), ...problems(401, 404) },
      },
    },
    async (req) => {
      const m = await db.baseModel.findUnique({ where: { id: req.params.id } });
      if (!m) throw notFound('model', req.params.id);
      return modelObject(m);
    },
  );
};

export default models;
