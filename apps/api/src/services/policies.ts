/**
 * LUC compression policies as the API lists them. A policy belongs to a base model and a budget, not to a
 * project; each is shown with how many of the caller's project's jobs used it, and names the data it was
 * profiled on only to the project whose job profiled it.
 */
import { policyObject, type PolicyRow, type PrismaClient } from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import { listPage } from '../serialize.js';

/** Jobs of the project that used each of the policies `ids`. */
async function jobCounts(db: PrismaClient, projectId: string, ids: string[]): Promise<Map<string, number>> {
  const rows = ids.length
    ? await db.job.groupBy({ by: ['policyId'], where: { projectId, policyId: { in: ids } }, _count: { _all: true } })
    : [];
  return new Map(rows.flatMap((r) => (r.policyId ? [[r.policyId, r._count._all] as const] : [])));
}

/** The policies' source jobs that belong to the project. */
async function ownSources(db: PrismaClient, projectId: string, rows: PolicyRow[]): Promise<Set<string>> {
  const ids = rows.flatMap((r) => (r.sourceJobId ? [r.sourceJobId] : []));
  if (!ids.length) return new Set();
  const own = await db.job.findMany({ where: { projectId, id: { in: ids } }, select: { id: true } });
  return new Set(own.map((j) => j.id));
}

/** The policy objects of `rows` as project `projectId` sees them. */
async function render(db: PrismaClient, projectId: string, rows: PolicyRow[]) {
  const ids = rows.map((r) => r.id);
  const [counts, own] = await Promise.all([jobCounts(db, projectId, ids), ownSources(db, projectId, rows)]);
  return rows.map((r) =>
    policyObject(r, { jobCount: counts.get(r.id) ?? 0, showSource: r.sourceJobId !== null && own.has(r.sourceJobId) }),
  );
}

/**
 * A page of policies, newest first, optionally of one base model.
 * @throws ApiError 400 `invalid_cursor` when `after` is not a policy
 */
export async function listPolicies(db: PrismaClient, projectId: string, q: { limit: number; after?: string; model?: string }) {
  let before: bigint | undefined;
  if (q.after) {
    const a = await db.policy.findUnique({ where: { id: q.after }, select: { seq: true } });
    if (!a) throw new ApiError(400, 'invalid_cursor', `after: no policy ${q.after}`, { param: 'after' });
    before = a.seq;
  }
  const rows = await db.policy.findMany({
    where: { ...(q.model ? { baseModelId: q.model } : {}), ...(before !== undefined ? { seq: { lt: before } } : {}) },
    orderBy: { seq: 'desc' },
    take: q.limit + 1,
  });
  return listPage(await render(db, projectId, rows), q.limit);
}

/** A policy. @throws ApiError 404 `policy_not_found` */
export async function getPolicy(db: PrismaClient, projectId: string, id: string) {
  const row = await db.policy.findUnique({ where: { id } });
  if (!row) throw notFound('policy', id);
  return (await render(db, projectId, [row]))[0];
}
