/**
 * Bearer API key authentication for `/v1`: the key's project scopes every lookup. Valid keys are kept in an
 * in-process cache for a second ({@link ApiKeyCache}), so most requests do not read `api_keys`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ApiKeyCache, bearerHashOf, type ResolvedKey } from '../keys.js';
import { ApiError, notFound } from '../errors.js';

/** Who is calling. */
export interface AuthContext {
  projectId: string;
  keyId: string;
  admin: boolean;
  /** the operator key (created at bootstrap): administers every project */
  operator: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext | null;
  }
  interface FastifyInstance {
    /** valid API keys by hash, for about a second (revoking a key clears it) */
    apiKeys: ApiKeyCache;
  }
  interface FastifyContextConfig {
    /** route needs no API key */
    public?: boolean;
  }
}

/** The caller's context; throws 401 when the route ran without one (should not happen on /v1). */
export function authOf(req: FastifyRequest): AuthContext {
  if (!req.auth) throw new ApiError(401, 'missing_api_key', 'Missing API key: send Authorization: Bearer <key>');
  return req.auth;
}

/** Throws 403 unless the caller holds an admin key. */
export function requireAdmin(req: FastifyRequest): AuthContext {
  const a = authOf(req);
  if (!a.admin) throw new ApiError(403, 'admin_required', 'This operation needs an admin API key');
  return a;
}

/**
 * Throws 404 `project_not_found` unless the caller may administer project `projectId`: an admin key its own
 * project, the operator key every project (404 rather than 403: another project's id is not confirmed to exist).
 */
export function requireProjectAdmin(req: FastifyRequest, projectId: string): AuthContext {
  const a = requireAdmin(req);
  if (!a.operator && a.projectId !== projectId) throw notFound('project', projectId);
  return a;
}

/** Throws 403 `operator_required` unless the caller holds the operator key. */
export function requireOperator(req: FastifyRequest): AuthContext {
  const a = requireAdmin(req);
  if (!a.operator) throw new ApiError(403, 'operator_required', 'This operation needs the operator API key (the bootstrap key)');
  return a;
}

/** A key's `lastUsedAt` is refreshed at most this often, ms, so that most requests only read the key. */
const LAST_USED_EVERY_MS = 60_000;

/** The key of `hash` from the cache, else from the database (cached when valid); null when unknown or revoked. */
async function resolveKey(app: FastifyInstance, hash: string): Promise<ResolvedKey | null> {
  const cached = app.apiKeys.get(hash);
  if (cached) return cached;
  const row = await app.db.apiKey.findUnique({
    where: { hash },
    select: { id: true, projectId: true, admin: true, operator: true, lastUsedAt: true, revokedAt: true },
  });
  if (!row || row.revokedAt) return null;
  const key: ResolvedKey = { id: row.id, projectId: row.projectId, admin: row.admin, operator: row.operator, lastUsedAt: row.lastUsedAt };
  app.apiKeys.set(hash, key);
  return key;
}

/**
 * Installs the auth hook on every `/v1` route not marked `config.public`: 401 `missing_api_key` without an
 * Authorization header, 401 `invalid_api_key` for a malformed, unknown or revoked key (with `WWW-Authenticate`).
 */
const auth = fp(
  async (app) => {
    app.decorateRequest('auth', null);
    app.decorate('apiKeys', new ApiKeyCache());
    app.addHook('onRequest', async (req) => {
      if (!req.url.startsWith('/v1/') || req.routeOptions.config?.public) return;
      const h = req.headers.authorization;
      if (!h)
        throw new ApiError(401, 'missing_api_key', 'Missing API key: send Authorization: Bearer <key>', {
          headers: { 'www-authenticate': 'Bearer' },
        });
      const hash = bearerHashOf(req);
      if (hash === null)
        throw new ApiError(401, 'invalid_api_key', 'Authorization must be "Bearer <key>"', {
          headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
        });
      const key = await resolveKey(app, hash);
      if (!key)
        throw new ApiError(401, 'invalid_api_key', 'Invalid or revoked API key', {
          headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
        });
      req.auth = { projectId: key.projectId, keyId: key.id, admin: key.admin, operator: key.operator };
      if (!key.lastUsedAt || Date.now() - key.lastUsedAt.getTime() > LAST_USED_EVERY_MS) {
        key.lastUsedAt = new Date(); // in the cached entry too: one write per interval, not one per request
        await app.db.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: key.lastUsedAt } });
      }
    });
  },
  { name: 'auth', dependencies: ['deps'] },
);

export default auth;
