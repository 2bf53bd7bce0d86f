/**
 * The web dashboard: the bundle that `apps/api/scripts/build-dashboard.mjs` writes to `apps/api/dist/dashboard`,
 * served at `/dashboard/` (no API key: the page asks for one and sends it on each /v1 call), and `/` redirecting
 * there. Hidden from the OpenAPI document.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { ApiError } from '../errors.js';

/** The bundle's folder: `src/routes` and `dist/routes` both sit two levels below the package root. */
export const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'dashboard');

/** Options of the dashboard plugin. */
export interface DashboardOptions {
  /** folder with the built `index.html`, `app.js`, `app.css` (default {@link DASHBOARD_DIR}) */
  root?: string;
}

const dashboard: FastifyPluginAsync<DashboardOptions> = async (app, opts) => {
  const root = opts.root ?? DASHBOARD_DIR;
  const route = { schema: { hide: true }, config: { public: true } };
  const toDashboard = async (_req: unknown, reply: FastifyReply) => reply.redirect('/dashboard/');
  app.get('/', route, toDashboard);
  app.get('/dashboard', route, toDashboard); // relative asset URLs need the trailing slash
  if (existsSync(join(root, 'index.html'))) {
    await app.register(fastifyStatic, { root, prefix: '/dashboard/', schemaHide: true, decorateReply: false });
    return;
  }
  // a checkout whose bundle was never built: say so instead of a bare 404
  app.get('/dashboard/*', route, async () => {
    throw new ApiError(503, 'dashboard_not_built', 'The dashboard is not built: run `npm run build:dashboard`');
  });
};

export default dashboard;
