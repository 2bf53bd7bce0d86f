/** @edgetune/api: the REST API. `buildApp` makes the Fastify app; `main.ts` runs it. */
export { buildApp } from './app.js';
export type { AppDeps } from './plugins/deps.js';
export { startApi } from './server.js';
