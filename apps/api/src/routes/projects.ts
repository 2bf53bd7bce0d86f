/**
 * `/v1/projects` (admin keys only): projects and their API keys. An admin key administers its own project; the
 * operator key (created at bootstrap) every project, and only it creates projects. Another project's id answers
 * 404 `project_not_found` to an admin key, as an unknown id does.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAdmin, requireOperator, requireProjectAdmin } from '../plugins/auth.js';
import { idempotencyOptions, idempotentTx, requestHash } from '../idempotency.js';
import { createApiKey } from '../keys.js';
import { createProject, findProject, listApiKeys, listProjects, revokeApiKey } from '../services/projects.js';
import { apiKeyObject } from '../serialize.js';
import { ApiKey, ApiKeyList, IdParams, ListQuery, Project, ProjectList, problems, ref } from '../schemas.js';

const projects: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  const idem = idempotencyOptions(app.config);

  app.post(
    '/v1/projects',
    {
      schema: {
        operationId: 'createProject',
        summary: 'Create a project (operator key)',
        tags: ['projects'],
        body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
        response: { 201: ref(Project), ...problems(400, 401, 403, 409) },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      return idempotentTx(
        db,
        req,
        reply,
        requestHash(req.body),
        async (tx) => ({ status: 201, body: await createProject(tx, req.body.name) }),
        idem,
      );
    },
  );

  app.get(
    '/v1/projects',
    {
      schema: {
        operationId: 'listProjects',
        summary: "List projects (admin: the key's own project; operator key: every project)",
        tags: ['projects'],
        querystring: ListQuery,
        response: { 200: ref(ProjectList), ...problems(400, 401, 403) },
      },
    },
    async (req) => {
      const a = requireAdmin(req);
      return listProjects(db, { limit: req.query.limit ?? 20, after: req.query.after, only: a.operator ? undefined : a.projectId });
    },
  );

  app.post(
    '/v1/projects/:id/keys',
    {
      schema: {
        operationId: 'createApiKey',
        summary: 'Create an API key for a project (admin); the secret is returned once',
        tags: ['projects'],
        params: IdParams,
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 100 }), admin: Type.Optional(Type.Boolean({ default: false })) },
          { additionalProperties: false },
        ),
        response: { 201: ref(ApiKey), ...problems(400, 401, 403, 404, 409) },
      },
    },
    async (req, reply) => {
      requireProjectAdmin(req, req.params.id);
      const p = await findProject(db, req.params.id);
      return idempotentTx(
        db,
        req,
        reply,
        requestHash({ project: p.id, ...req.body }),
        async (tx) => {
          const { row, secret } = await createApiKey(tx, p.id, { name: req.body.name, admin: req.body.admin ?? false });
          return { status: 201, body: apiKeyObject(row, secret) };
        },
        idem,
      );
    },
  );

  app.get(
    '/v1/projects/:id/keys',
    {
      schema: {
        operationId: 'listApiKeys',
        summary: "List a project's API keys (admin; no secrets)",
        tags: ['projects'],
        params: IdParams,
        response: { 200: ref(ApiKeyList), ...problems(401, 403, 404) },
      },
    },
    async (req) => {
      requireProjectAdmin(req, req.params.id);
      return listApiKeys(db, (await findProject(db, req.params.id)).id);
    },
  );

  app.delete(
    '/v1/projects/:id/keys/:key_id',
    {
      schema: {
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key (admin)',
        tags: ['projects'],
        params: Type.Object({ id: Type.String(), key_id: Type.String() }),
        response: { 200: ref(ApiKey), ...problems(401, 403, 404) },
      },
    },
    async (req) => {
      requireProjectAdmin(req, req.params.id);
      const key = await revokeApiKey(db, (await findProject(db, req.params.id)).id, req.params.key_id);
      app.apiKeys.clear(); // revoked at once in this process (others within the cache's second)
      return key;
    },
  );
};

export default projects;
