/** Liveness and readiness. */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { within } from '../deadline.js';
import { ApiError } from '../errors.js';
import { problems } from '../schemas.js';

const Health = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

const health: FastifyPluginAsyncTypebox = async (app) => {
  const { db, redis } = app;
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: { operationId: 'healthz', summary: 'Liveness', tags: ['health'], security: [], response: { 200: Health } },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        operationId: 'readyz',
        summary: 'Readiness: PostgreSQL and Redis answer',
        tags: ['health'],
        security: [],
        response: { 200: Health, ...problems(503) },
      },
    },
    async () => {
      const checks: Record<string, string> = {};
      const timeout = <T>(p: Promise<T>) => within(p, 2000);
      await Promise.all([
        timeout(db.$queryRawUnsafe('SELECT 1')).then(
          () => {
            checks.database = 'ok';
          },
          (e: Error) => {
            checks.database = `error: ${e.message}`;
          },
        ),
        timeout(redis.ping()).then(
          () => {
            checks.redis = 'ok';
          },
          (e: Error) => {
            checks.redis = `error: ${e.message}`;
          },
        ),
      ]);
      const bad = Object.entries(checks).filter(([, v]) => v !== 'ok');
      if (bad.length)
        throw new ApiError(503, 'not_ready', `Not ready: ${bad.map(([k, v]) => `${k} ${v}`).join('; ')}`, {
          headers: { 'retry-after': '5' },
          extra: { checks }, // each store's state, as in the 200 answer
        });
      return { status: 'ok', checks };
    },
  );
};

export default health;
