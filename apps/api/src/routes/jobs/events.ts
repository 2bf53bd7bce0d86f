/** `/v1/jobs/:id/events`: a job's events as JSON pages, and as a Server-Sent Events stream that follows the job. */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { fastifySSE } from '@fastify/sse';
import { authOf } from '../../plugins/auth.js';
import { findJob } from '../../services/jobs.js';
import { eventCursor, listJobEvents } from '../../services/job-events.js';
import { IdParams, JobEventList, problems, ref } from '../../schemas.js';
import { followJobEvents, PING_MS } from './event-stream.js';

const events: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  // comment lines every PING_MS keep proxies from closing an idle stream
  await app.register(fastifySSE, { heartbeatInterval: PING_MS });

  app.get(
    '/v1/jobs/:id/events',
    {
      schema: {
        operationId: 'listJobEvents',
        summary: 'List job events (oldest first)',
        tags: ['jobs'],
        params: IdParams,
        description:
          'Pages forward in time: pass the last id of a page as `after` to get the next. Types: `status`, `message`, `metrics` (one per training step).',
        querystring: Type.Object(
          { after: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) },
          { additionalProperties: false },
        ),
        response: { 200: ref(JobEventList), ...problems(400, 401, 404) },
      },
    },
    async (req) => {
      const j = await findJob(db, authOf(req).projectId, req.params.id);
      return listJobEvents(db, j.id, { limit: req.query.limit ?? 100, after: req.query.after });
    },
  );

  app.get(
    '/v1/jobs/:id/events/stream',
    {
      // no Accept negotiation: every client gets the stream (errors before it starts are problem+json)
      sse: 'manual',
      schema: {
        operationId: 'streamJobEvents',
        summary: 'Stream job events (Server-Sent Events)',
        tags: ['jobs'],
        params: IdParams,
        description:
          'text/event-stream of the same events: `id` is the event id, `event` its type, `data` the event object. ' +
          'Reconnect with `Last-Event-ID` (or `?after=`) to continue without gaps. Ends with an `end` event once the job is finished.',
        querystring: Type.Object({ after: Type.Optional(Type.String()) }, { additionalProperties: false }),
        headers: Type.Object({ 'last-event-id': Type.Optional(Type.String()) }),
        response: {
          200: { description: 'event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...problems(400, 401, 404),
        },
      },
    },
    async (req, reply) => {
      const j = await findJob(db, authOf(req).projectId, req.params.id);
      const lastEventId = req.headers['last-event-id'];
      const seq = await eventCursor(db, j.id, lastEventId || req.query.after, lastEventId ? 'Last-Event-ID' : 'after');
      // without Redis the stream still follows the job, by polling, until the hub can subscribe again
      await app.hub.start().catch(() => {});
      await followJobEvents(app, reply, j.id, seq);
    },
  );
};

export default events;
