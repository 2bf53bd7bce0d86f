/** @edgetune/api: the REST API. `buildApp` makes the Fastify app; `main.ts` runs it. */
export { buildApp } from './app.js';
export type { AppDeps } from './app.js';
export { startApi } from './server.js';
