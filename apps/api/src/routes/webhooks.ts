/**
 * `/v1/webhooks`: endpoints that receive the project's job status events, signed as Standard Webhooks
 * specifies, and each endpoint's delivery log.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { authOf } from '../plugins/auth.js';
import { createWebhook, deleteWebhook, getWebhook, listDeliveries, listWebhooks } from '../services/webhooks.js';
import {
  DeletedWebhook,
  IdParams,
  ListQuery,
  problems,
  ref,
  WebhookCreate,
  WebhookCreated,
  WebhookDeliveryList,
  WebhookList,
  WebhookObject,
} from '../schemas.js';

const webhooks: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'createWebhook',
        summary: 'Create a webhook endpoint for job status events',
        tags: ['webhooks'],
        description:
          'Each event is POSTed as JSON `{object: "event", id, type, created_at, data: {id: <job id>}}` with the Standard Webhooks headers ' +
          '`webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the secret). ' +
          'A 2xx answer delivers it; anything else, or no answer in time, is retried with exponential backoff. ' +
          'The answer shows the signing secret; no later one does.',
        body: ref(WebhookCreate),
        response: { 201: ref(WebhookCreated), ...problems(400, 401) },
      },
    },
    async (req, reply) => reply.code(201).send(await createWebhook(db, authOf(req).projectId, req.body)),
  );

  app.get(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'listWebhooks',
        summary: 'List webhook endpoints (newest first)',
        tags: ['webhooks'],
        querystring: ListQuery,
        response: { 200: ref(WebhookList), ...problems(400, 401) },
      },
    },
    async (req) => listWebhooks(db, authOf(req).projectId, { limit: req.query.limit ?? 20, after: req.query.after }),
  );

  app.get(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'getWebhook',
        summary: 'Get a webhook endpoint',
        tags: ['webhooks'],
        params: IdParams,
        response: { 200: ref(WebhookObject), ...problems(401, 404) },
      },
    },
    async (req) => getWebhook(db, authOf(req).projectId, req.params.id),
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'deleteWebhook',
        summary: 'Delete a webhook endpoint and its delivery log',
        tags: ['webhooks'],
        params: IdParams,
        response: { 200: ref(DeletedWebhook), ...problems(401, 404) },
      },
    },
    async (req) => deleteWebhook(db, authOf(req).projectId, req.params.id),
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        summary: "List a webhook endpoint's deliveries (newest first) with their attempts",
        tags: ['webhooks'],
        params: IdParams,
        querystring: ListQuery,
        response: { 200: ref(WebhookDeliveryList), ...problems(400, 401, 404) },
      },
    },
    async (req) => listDeliveries(db, authOf(req).projectId, req.params.id, { limit: req.query.limit ?? 20, after: req.query.after }),
  );
};

export default webhooks;
