/**
 * LUC compression policies as the API lists them. A policy belongs to a base model and a budget, not to a
 * project; each is shown with how many of the caller's project's jobs used it.
 */
import { policyObject, type PrismaClient } from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import { listPage } from '../serialize.js';

/** Jobs of the project that used each of the policies `ids`. */
async function jobCounts(db: PrismaClient, projectId: string, ids: string[]): Promise<Map<string, number>> {
  const rows = ids.length
    ? await db.job.groupBy({ by: ['policyId'], where: { projectId, policyId: { in: ids } }, _count: { _all: true } })
    : [];
  return new Map(rows.flatMap((r) => (r.policyId ? [[r.policyId, r._count._all] as const] : [])));
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
  const counts = await jobCounts(
    db,
    projectId,
    rows.map((r) => r.id),
  );
  return listPage(
    rows.map((r) => policyObject(r, counts.get(r.id) ?? 0)),
    q.limit,
  );
}

/** A policy. @throws ApiError 404 `policy_not_found` */
export async function getPolicy(db: PrismaClient, projectId: string, id: string) {
  const row = await db.policy.findUnique({ where: { id } });
  if (!row) throw notFound('policy', id);
  return policyObject(row, (await jobCounts(db, projectId, [row.id])).get(row.id) ?? 0);
}
