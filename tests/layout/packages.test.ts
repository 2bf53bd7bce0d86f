// The layering the packages promise: core knows no TF.js, HTTP or database; store no HTTP or TF.js; the engine
// no HTTP or database; the apps never import each other; nothing the service runs depends on the lab.
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '../engine/helpers.js';

/** Every .ts source file under `dir` (generated code excluded). */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'generated' || name === 'node_modules' || name === 'dist') continue;
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The module specifiers a file imports, statically or dynamically. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)].map((m) => m[1]);
}

/** `workspace`'s source files that import a module matching `forbidden`, as `file: module` lines. */
function offenders(workspace: string, forbidden: RegExp): string[] {
  return sources(join(REPO_ROOT, workspace, 'src')).flatMap((f) =>
    specifiers(f)
      .filter((s) => forbidden.test(s))
      .map((s) => `${relative(REPO_ROOT, f)}: ${s}`),
  );
}

const dependencies = (workspace: string): string[] =>
  Object.keys(JSON.parse(readFileSync(join(REPO_ROOT, workspace, 'package.json'), 'utf8')).dependencies ?? {});

describe('package layering', () => {
  it('core imports no TF.js, HTTP, database, queue or other workspace', () => {
    expect(offenders('packages/core', /^@tensorflow|^fastify|^@fastify|^@prisma|^pg$|^bullmq|^ioredis|^@edgetune\//)).toEqual([]);
    expect(dependencies('packages/core').filter((d) => /^@tensorflow|fastify|prisma|^pg$|bullmq|ioredis|^@edgetune\//.test(d))).toEqual([]);
  });

  it('store imports no TF.js, HTTP, engine or lab', () => {
    expect(offenders('packages/store', /^@tensorflow|^fastify|^@fastify|^@edgetune\/(engine|lab|api|worker)/)).toEqual([]);
  });

  it('the engine imports no HTTP, database, queue, service package or lab', () => {
    expect(offenders('packages/engine', /^fastify|^@fastify|^@prisma|^pg$|^bullmq|^ioredis|^@edgetune\/(store|lab|api|worker)/)).toEqual(
      [],
    );
    expect(dependencies('packages/engine').filter((d) => d.startsWith('@tensorflow/'))).toEqual([
      '@tensorflow/tfjs-backend-cpu',
      '@tensorflow/tfjs-backend-wasm',
      '@tensorflow/tfjs-core',
    ]);
  });

  it('the API imports neither TF.js, the engine, the lab nor the worker', () => {
    expect(offenders('apps/api', /^@tensorflow|^@edgetune\/(engine|lab|worker)|apps\/worker|\.\.\/\.\.\/worker/)).toEqual([]);
    expect(
      dependencies('apps/api')
        .filter((d) => d.startsWith('@edgetune/'))
        .sort(),
    ).toEqual(['@edgetune/core', '@edgetune/store']);
  });

  it('the worker never imports the API or the lab', () => {
    expect(offenders('apps/worker', /^@edgetune\/(api|lab)|apps\/api|\.\.\/\.\.\/api/)).toEqual([]);
    expect(
      dependencies('apps/worker')
        .filter((d) => d.startsWith('@edgetune/'))
        .sort(),
    ).toEqual(['@edgetune/core', '@edgetune/engine', '@edgetune/store']);
  });

  it('the client speaks HTTP only; the edgetune command reaches the service through the client', () => {
    expect(offenders('packages/client', /^@edgetune\/|^@tensorflow|^fastify|^@fastify|^@prisma|^pg$|^bullmq|^ioredis/)).toEqual([]);
    expect(offenders('apps/cli', /^@edgetune\/(api|worker|store|engine|lab)|^@tensorflow|^@prisma|^pg$|^bullmq|^ioredis|apps\//)).toEqual(
      [],
    );
  });
});
