// OpenAPI 3.1: generated from the route schemas; the committed openapi/openapi.json must match it
// (regenerate with `npm run openapi`), and the document is served at /openapi.json with Swagger UI at /docs.
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateOpenApi, serializeOpenApi } from '../../apps/api/src/openapi.js';
import { buildApp } from '../../apps/api/src/app.js';
import { loadConfig } from '../../packages/core/src/service/config.js';
import { REPO_ROOT } from '../helpers/service.js';

let doc: any;
beforeAll(async () => {
  doc = await generateOpenApi();
});

const operations = () =>
  Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({ path, method, op })),
  );

describe('OpenAPI document', () => {
  it('the committed openapi/openapi.json equals the generated document (run `npm run openapi` after changing routes)', () => {
    const committed = readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8');
    expect(committed).toBe(serializeOpenApi(doc));
  });

  it('is OpenAPI 3.1 with bearer auth and named component schemas', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes.bearerAuth).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }));
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(['Problem', 'File', 'Job', 'JobCreate', 'JobEvent', 'Checkpoint', 'Model', 'ApiKey']),
    );
  });

  it('every operation has an id, a summary and a tag; every /v1 error response is problem+json', () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThanOrEqual(20);
    const ids = new Set<string>();
    for (const { path, method, op } of ops) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
      expect(ids.has(op.operationId), where).toBe(false);
      ids.add(op.operationId);
      expect(op.summary, where).toBeTruthy();
      expect(op.tags?.length, where).toBe(1);
      if (!path.startsWith('/v1/')) continue;
      expect(Object.keys(op.responses), where).toContain('401');
      for (const [status, resp] of Object.entries(op.responses as Record<string, any>)) {
        if (Number(status) >= 400) expect(Object.keys(resp.content), `${where} ${status}`).toEqual(['application/problem+json']);
      }
    }
    for (const p of [
      '/v1/files',
      '/v1/files/{id}/content',
      '/v1/jobs',
      '/v1/jobs/{id}/cancel',
      '/v1/jobs/{id}/events/stream',
      '/v1/jobs/{id}/checkpoints',
      '/v1/jobs/{id}/adapter',
      '/v1/models',
      '/v1/projects/{id}/keys',
      '/healthz',
      '/readyz',
    ]) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
  });

  it('is served at /openapi.json and as Swagger UI at /docs', async () => {
    const inert = {} as never;
    const app = await buildApp({ config: loadConfig({}), db: inert, redis: inert, queue: inert });
    try {
      const r = await app.inject({ method: 'GET', url: '/openapi.json' });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual(doc);
      const ui = await app.inject({ method: 'GET', url: '/docs/' });
      expect(ui.statusCode).toBe(200);
      expect(ui.headers['content-type']).toMatch(/text\/html/);
      expect(ui.body).toContain('swagger');
    } finally {
      await app.close();
    }
  });
});
