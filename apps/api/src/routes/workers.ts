/** `/v1/workers`: the worker processes and the devices they run jobs on (what dry runs and admission plan for). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { workerObject } from '../serialize.js';
import { listWorkers } from '@edgetune/store';
import { problems, ref, WorkerList } from '../schemas.js';

const workers: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;
  app.get(
    '/v1/workers',
    {
      schema: {
        operationId: 'listWorkers',
        summary: 'List workers and their devices',
        tags: ['workers'],
        description:
          'Registered workers, newest first: a stopped worker removes itself, a crashed one stays listed offline until a day after its ' +
          'last heartbeat. A job that states no `device` is planned for the online worker with the least memory budget among those that have ' +
          "its model, else among all online workers (the plan's `device.worker_id`).",
        response: { 200: ref(WorkerList), ...problems(401) },
      },
    },
    async () => {
      const now = Date.now();
      return { object: 'list' as const, data: (await listWorkers(db)).map((w) => workerObject(w, config.workerHeartbeatMs, now)) };
    },
  );
};

export default workers;
