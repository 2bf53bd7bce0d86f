/** Projects and their API keys (admin operations). */
import { newId } from '@edgetune/core';
import type { Prisma, PrismaClient } from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import { apiKeyObject, listPage, projectObject } from '../serialize.js';

/** Creates a project (through `db`, a client or a transaction). */
export async function createProject(db: Prisma.TransactionClient, name: string) {
  return projectObject(await db.project.create({ data: { id: newId('project'), name } }));
}

/**
 * A page of projects, oldest first; with `only`, of that project alone (an admin key's view).
 * @throws ApiError 400 `invalid_cursor` when `after` is not a project (one it may list)
 */
export async function listProjects(db: PrismaClient, q: { limit: number; after?: string; only?: string }) {
  const scope = q.only === undefined ? {} : { id: q.only };
  let after: Date | undefined, afterId: string | undefined;
  if (q.after) {
    const a = q.only === undefined || q.only === q.after ? await db.project.findUnique({ where: { id: q.after } }) : null;
    if (!a) throw new ApiError(400, 'invalid_cursor', `after: no project ${q.after}`, { param: 'after' });
    after = a.createdAt;
    afterId = a.id;
  }
  const rows = await db.project.findMany({
    where: { ...scope, ...(after ? { OR: [{ createdAt: { gt: after } }, { createdAt: after, id: { gt: afterId } }] } : {}) },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    take: q.limit + 1,
  });
  return listPage(rows.map(projectObject), q.limit);
}

/** A project. @throws ApiError 404 `project_not_found` */
export async function findProject(db: PrismaClient, id: string) {
  const p = await db.project.findUnique({ where: { id } });
  if (!p) throw notFound('project', id);
  return p;
}

/** Every API key of the project, oldest first, without secrets. */
export async function listApiKeys(db: PrismaClient, projectId: string) {
  const rows = await db.apiKey.findMany({ where: { projectId }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
  return listPage(
    rows.map((k) => apiKeyObject(k)),
    rows.length,
  );
}

/** Revokes an API key of the project (a revoked key stays as it is). @throws ApiError 404 `api_key_not_found` */
export async function revokeApiKey(db: PrismaClient, projectId: string, keyId: string) {
  const k = await db.apiKey.findFirst({ where: { id: keyId, projectId } });
  if (!k) throw notFound('api_key', keyId);
  return apiKeyObject(k.revokedAt ? k : await db.apiKey.update({ where: { id: k.id }, data: { revokedAt: new Date() } }));
}
