/** `/v1/projects` (admin keys only): projects and their API keys. */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../app.js';
import { ApiError, notFound } from '../errors.js';
import { requireAdmin } from '../auth.js';
import { idempotencyOptions, idempotentTx, requestHash } from '../idempotency.js';
import { createApiKey } from '../keys.js';
import { newId } from '@edgetune/core';
import { apiKeyObject, listPage, projectObject } from '../serialize.js';
import { ApiKey, ApiKeyList, IdParams, ListQuery, Project, ProjectList, problems, ref } from '../schemas.js';

const projects: FastifyPluginAsyncTypebox<AppDeps> = async (app, { db, config }) => {
  const idem = idempotencyOptions(config);
  app.post('/v1/projects', {
    schema: {
      operationId: 'createProject', summary: 'Create a project (admin)', tags: ['projects'],
      body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
      response: { 201: ref(Project), ...problems(400, 401, 403, 409) },
    },
  }, async (req, reply) => {
    requireAdmin(req);
    return idempotentTx(db, req, reply, requestHash(req.body), async (tx) => {
      const p = await tx.project.create({ data: { id: newId('project'), name: req.body.name } });
      return { status: 201, body: projectObject(p) };
    }, idem);
  });

  app.get('/v1/projects', {
    schema: { operationId: 'listProjects', summary: 'List projects (admin)', tags: ['projects'], querystring: ListQuery, response: { 200: ref(ProjectList), ...problems(400, 401, 403) } },
  }, async (req) => {
    requireAdmin(req);
    const limit = req.query.limit ?? 20;
    let after: Date | undefined, afterId: string | undefined;
    if (req.query.after) {
      const a = await db.project.findUnique({ where: { id: req.query.after } });
      if (!a) throw new ApiError(400, 'invalid_cursor', `after: no project ${req.query.after}`, { param: 'after' });
      after = a.createdAt;
      afterId = a.id;
    }
    const rows = await db.project.findMany({
      where: after ? { OR: [{ createdAt: { gt: after } }, { createdAt: after, id: { gt: afterId } }] } : {},
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], take: limit + 1,
    });
    return listPage(rows.map(projectObject), limit);
  });

  const findProject = async (id: string) => {
    const p = await db.project.findUnique({ where: { id } });
    if (!p) throw notFound('project', id);
    return p;
  };

  app.post('/v1/projects/:id/keys', {
    schema: {
      operationId: 'createApiKey', summary: 'Create an API key for a project (admin); the secret is returned once', tags: ['projects'], params: IdParams,
      body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), admin: Type.Optional(Type.Boolean({ default: false })) }, { additionalProperties: false }),
      response: { 201: ref(ApiKey), ...problems(400, 401, 403, 404, 409) },
    },
  }, async (req, reply) => {
    requireAdmin(req);
    const p = await findProject(req.params.id);
    return idempotentTx(db, req, reply, requestHash({ project: p.id, ...req.body }), async (tx) => {
      const { row, secret } = await createApiKey(tx, p.id, { name: req.body.name, admin: req.body.admin ?? false });
      return { status: 201, body: apiKeyObject(row, secret) };
    }, idem);
  });

  app.get('/v1/projects/:id/keys', {
    schema: { operationId: 'listApiKeys', summary: "List a project's API keys (admin; no secrets)", tags: ['projects'], params: IdParams, response: { 200: ref(ApiKeyList), ...problems(401, 403, 404) } },
  }, async (req) => {
    requireAdmin(req);
    const p = await findProject(req.params.id);
    const rows = await db.apiKey.findMany({ where: { projectId: p.id }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return listPage(rows.map((k) => apiKeyObject(k)), rows.length);
  });

  app.delete('/v1/projects/:id/keys/:key_id', {
    schema: {
      operationId: 'revokeApiKey', summary: 'Revoke an API key (admin)', tags: ['projects'],
      params: Type.Object({ id: Type.String(), key_id: Type.String() }),
      response: { 200: ref(ApiKey), ...problems(401, 403, 404) },
    },
  }, async (req) => {
    requireAdmin(req);
    const p = await findProject(req.params.id);
    const k = await db.apiKey.findFirst({ where: { id: req.params.key_id, projectId: p.id } });
    if (!k) throw notFound('api_key', req.params.key_id);
    const row = k.revokedAt ? k : await db.apiKey.update({ where: { id: k.id }, data: { revokedAt: new Date() } });
    return apiKeyObject(row);
  });
};

export default projects;
