/**
 * `/v1/fine_tuning/jobs...`: OpenAI's paths for the `/v1/jobs` routes (create, list, get, cancel, events,
 * checkpoints, ...), so that OpenAI's clients (`client.fineTuning.jobs.*`) drive tuning jobs. The objects are
 * already OpenAI's (`fine_tuning.job`, lists with `has_more`): each alias is the same route under the other
 * path, with its own operationId in the OpenAPI document. Registered before the jobs routes it copies.
 */
import fp from 'fastify-plugin';
import type { RouteOptions } from 'fastify';
import { addOpenAiError } from '../openai-errors.js';

const FROM = '/v1/jobs';
const TO = '/v1/fine_tuning/jobs';

const fineTuning = fp(
  async (app) => {
    app.addHook('onRoute', function (route: RouteOptions & { path?: string; routePath?: string; prefix?: string }) {
      if (route.url !== FROM && !route.url.startsWith(`${FROM}/`)) return;
      if (route.method === 'HEAD') return; // the copy of a GET gets its own HEAD route
      const url = TO + route.url.slice(FROM.length);
      const schema = route.schema as (Record<string, unknown> & { operationId?: string; tags?: string[] }) | undefined;
      const op = schema?.operationId;
      const { path: _path, routePath: _routePath, prefix: _prefix, ...rest } = route;
      this.route({
        ...rest,
        url,
        // OpenAI's clients read the error code from OpenAI's envelope
        preSerialization: [...[route.preSerialization ?? []].flat(), addOpenAiError],
        ...(schema
          ? {
              schema: {
                ...schema,
                ...(op ? { operationId: `fineTuning${op[0].toUpperCase()}${op.slice(1)}` } : {}),
                tags: ['fine_tuning'],
                summary: `${(schema.summary as string | undefined) ?? ''} (OpenAI path: alias of ${route.method} ${route.url})`.trim(),
              },
            }
          : {}),
      });
    });
  },
  { name: 'fine-tuning-alias' },
);

export default fineTuning;
