/** A job's events (status, messages, per-step metrics) in order: pages and the reads of an event stream. */
import { isTerminal } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';
import { ApiError } from '../errors.js';
import { eventObject, listPage } from '../serialize.js';

/** An event row as the stream reads it. */
export type EventRow = Awaited<ReturnType<PrismaClient['jobEvent']['findMany']>>[number];

/**
 * The position (`seq`) just after event `after` of the job; -1 (before the first event) without one.
 * @param param the request field `after` came from, named in the error (`after`, `Last-Event-ID`)
 * @throws ApiError 400 `invalid_cursor` when `after` is not an event of the job
 */
export async function eventCursor(db: PrismaClient, jobId: string, after: string | undefined, param: string): Promise<bigint> {
  if (!after) return -1n;
  const e = await db.jobEvent.findFirst({ where: { id: after, jobId }, select: { seq: true } });
  if (!e) throw new ApiError(400, 'invalid_cursor', `${param}: no event ${after} in this job`, { param });
  return e.seq;
}

/**
 * A page of the job's events, oldest first, after event `q.after`.
 * @throws ApiError 400 `invalid_cursor` (see {@link eventCursor})
 */
export async function listJobEvents(db: PrismaClient, jobId: string, q: { limit: number; after?: string }) {
  const from = await eventCursor(db, jobId, q.after, 'after');
  const rows = await db.jobEvent.findMany({ where: { jobId, seq: { gt: from } }, orderBy: { seq: 'asc' }, take: q.limit + 1 });
  return listPage(rows.map(eventObject), q.limit);
}

/** Up to `take` events of the job after position `seq`, oldest first. */
export function eventsAfter(db: PrismaClient, jobId: string, seq: bigint, take: number): Promise<EventRow[]> {
  return db.jobEvent.findMany({ where: { jobId, seq: { gt: seq } }, orderBy: { seq: 'asc' }, take });
}

/** The job's status now; undefined once the job is gone. */
export async function jobStatus(db: PrismaClient, jobId: string): Promise<string | undefined> {
  return (await db.job.findUnique({ where: { id: jobId }, select: { status: true } }))?.status;
}

/** Whether `e` is the `status` event of a finished job (succeeded, failed, cancelled). */
export function isTerminalStatusEvent(e: Pick<EventRow, 'type' | 'data'>): boolean {
  const status = (e.data as { status?: string } | null)?.status;
  return e.type === 'status' && !!status && isTerminal(status);
}
