/**
 * Rate limits of `/v1` (@fastify/rate-limit, in-process counters): requests per API key, requests per client
 * address, and failed authentications (401) per client address. Over a limit the request is answered 429
 * `rate_limited` with `Retry-After` before its key is looked up. Other routes (health, metrics, the OpenAPI
 * document, the dashboard's files) are not limited.
 *
 * The counters live in this process, not in Redis: one API process serves a LAN box, a check costs no round
 * trip, and the limits keep holding while Redis is down (when a flood would otherwise reach PostgreSQL).
 */
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { ApiError } from '../errors.js';
import { bearerHashOf } from '../keys.js';

/** 429 `rate_limited`, retry after `ttlMs` (at least 1 s). */
function rateLimited(what: string, ttlMs: number): ApiError {
  const after = Math.max(1, Math.ceil(ttlMs / 1000));
  return new ApiError(429, 'rate_limited', `Too many ${what}: retry in ${after} s`, { headers: { 'retry-after': String(after) } });
}

const limits = fp(
  async (app) => {
    const { rateLimitWindowMs: timeWindow, rateLimitPerKey, rateLimitPerAddress, authFailureLimit } = app.config;
    // global: false: no route hooks of the plugin's own; the checks below decide and answer as problem+json
    await app.register(rateLimit, { global: false, timeWindow });
    type Limiter = ReturnType<typeof app.createRateLimit>;
    const limiter = (max: number, keyGenerator: (req: FastifyRequest) => string): Limiter | null =>
      max > 0 ? app.createRateLimit({ max, timeWindow, keyGenerator }) : null;
    const perAddress = limiter(rateLimitPerAddress, (req) => req.ip);
    const perKey = limiter(rateLimitPerKey, (req) => bearerHashOf(req) ?? '');
    const failures = limiter(authFailureLimit, (req) => req.ip);

    /** Counts the request (or, with `peek`, only reads the counter) and throws 429 once it is over (at, with `peek`) the limit. */
    async function check(limit: Limiter | null, req: FastifyRequest, what: string, peek = false): Promise<void> {
      const r = limit && (await limit(req, { increment: !peek }));
      if (r && !r.isAllowed && (peek ? r.remaining === 0 : r.isExceeded)) throw rateLimited(what, r.ttl);
    }

    app.addHook('onRequest', async (req) => {
      if (!req.url.startsWith('/v1/')) return;
      await check(failures, req, 'failed authentications from this address', true);
      await check(perAddress, req, 'requests from this address');
      if (bearerHashOf(req) !== null) await check(perKey, req, 'requests with this API key');
    });
    // counted before the answer leaves, so that a burst of wrong keys is cut off within the limit
    app.addHook('onSend', async (req, reply) => {
      if (failures && reply.statusCode === 401 && req.url.startsWith('/v1/')) await failures(req);
    });
  },
  { name: 'rate-limit', dependencies: ['deps', 'errors'] },
);

export default limits;
