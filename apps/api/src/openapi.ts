/**
 * The OpenAPI 3.1 document, generated from the route schemas without any connection (the app is built
 * with inert dependencies and never serves a request). `npm run openapi` writes openapi/openapi.json.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { buildApp } from './app.js';
import { loadConfig } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';
import type { QueueJobData } from '@edgetune/core';

/** The generated document (same as `GET /openapi.json`). */
export async function generateOpenApi(): Promise<Record<string, unknown>> {
  const inert = {} as never;
  const app = await buildApp({
    config: loadConfig({}),
    db: inert as PrismaClient,
    redis: inert as Redis,
    queue: inert as Queue<QueueJobData>,
  });
  await app.ready();
  const doc = app.swagger() as unknown as Record<string, unknown>;
  await app.close();
  return doc;
}

/** Serialized as committed: 2-space JSON with a final newline. */
export function serializeOpenApi(doc: unknown): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? 'openapi/openapi.json');
  writeFileSync(out, serializeOpenApi(await generateOpenApi()));
  console.error(`wrote ${out}`);
}
