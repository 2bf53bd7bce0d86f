/** Bearer API key authentication for `/v1`: the key's project scopes every lookup. */
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hashKey } from '../keys.js';
import { ApiError } from '../errors.js';

/** Who is calling. */
export interface AuthContext {
  projectId: string;
  keyId: string;
  admin: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext | null;
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

/** A key's `lastUsedAt` is refreshed at most this often, ms, so that most requests only read the key. */
const LAST_USED_EVERY_MS = 60_000;

/**
 * Installs the auth hook on every `/v1` route not marked `config.public`: 401 `missing_api_key` without an
 * Authorization header, 401 `invalid_api_key` for a malformed, unknown or revoked key (with `WWW-Authenticate`).
 */
const auth = fp(
  async (app) => {
    app.decorateRequest('auth', null);
    app.addHook('onRequest', async (req) => {
      if (!req.url.startsWith('/v1/') || req.routeOptions.config?.public) return;
      const h = req.headers.authorization;
      if (!h)
        throw new ApiError(401, 'missing_api_key', 'Missing API key: send Authorization: Bearer <key>', {
          headers: { 'www-authenticate': 'Bearer' },
        });
      const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
      if (!m)
        throw new ApiError(401, 'invalid_api_key', 'Authorization must be "Bearer <key>"', {
          headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
        });
      const key = await app.db.apiKey.findUnique({ where: { hash: hashKey(m[1]) } });
      if (!key || key.revokedAt)
        throw new ApiError(401, 'invalid_api_key', 'Invalid or revoked API key', {
          headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
        });
      req.auth = { projectId: key.projectId, keyId: key.id, admin: key.admin };
      if (!key.lastUsedAt || Date.now() - key.lastUsedAt.getTime() > LAST_USED_EVERY_MS) {
        await app.db.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: new Date() } });
      }
    });
  },
  { name: 'auth', dependencies: ['deps'] },
);

export default auth;
