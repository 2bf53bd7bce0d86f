/**
 * How long a job's checkpoints live: while it runs, the latest EDGETUNE_CHECKPOINTS_KEPT and the best on
 * validation; once it has ended, none, unless it asked `checkpointing.keep_after_finish`. Their blobs are
 * freed with them.
 */
import { isTerminal } from '@edgetune/core';
import { freeBlobs } from './blobs.js';
import type { Prisma, PrismaClient } from './db.js';

/** A checkpoint's `metrics` as the worker stores them (`valid_loss`: the latest validation before it). */
interface CheckpointMetrics {
  valid_loss?: number | null;
}

/**
 * Deletes job `jobId`'s checkpoints but the latest `kept` (by step) and the one with the lowest `valid_loss`
 * (the earliest of equals: the nearest to that evaluation), and frees their blobs.
 * @returns the steps deleted
 * @throws the database's errors
 */
export async function pruneCheckpoints(tx: Prisma.TransactionClient, jobId: string, kept: number): Promise<number[]> {
  const all = await tx.checkpoint.findMany({
    where: { jobId },
    orderBy: { step: 'desc' },
    select: { id: true, step: true, blobId: true, metrics: true },
  });
  if (all.length <= kept) return [];
  const keep = new Set(all.slice(0, kept).map((c) => c.id));
  let best: (typeof all)[number] | null = null;
  for (const c of all) {
    const loss = (c.metrics as CheckpointMetrics | null)?.valid_loss;
    if (typeof loss !== 'number' || !Number.isFinite(loss)) continue;
    const bestLoss = (best?.metrics as CheckpointMetrics | null)?.valid_loss as number | undefined;
    if (best === null || loss <= (bestLoss as number)) best = c; // newest first: `<=` ends on the earliest of equals
  }
  if (best) keep.add(best.id);
  const drop = all.filter((c) => !keep.has(c.id));
  if (!drop.length) return [];
  await tx.checkpoint.deleteMany({ where: { id: { in: drop.map((c) => c.id) } } });
  await freeBlobs(
    tx,
    drop.map((c) => c.blobId),
  );
  return drop.map((c) => c.step).sort((a, b) => a - b);
}

/**
 * Deletes the checkpoints of job `jobId` once it has ended (succeeded, failed, cancelled) unless it asked to
 * keep them, and frees their blobs; a job still queued or running (re-queued to resume) keeps them.
 * @returns how many were deleted
 * @throws the database's errors
 */
export async function dropFinishedCheckpoints(db: PrismaClient, jobId: string): Promise<number> {
  return db.$transaction(async (tx) => {
    // the row locked, so a retry that re-queues the job cannot come in between the check and the delete
    const [job] = await tx.$queryRaw<{ status: string; keep_checkpoints: boolean }[]>`
      SELECT status, keep_checkpoints FROM jobs WHERE id = ${jobId} FOR NO KEY UPDATE`;
    if (!job || !isTerminal(job.status) || job.keep_checkpoints) return 0;
    const held = await tx.checkpoint.findMany({ where: { jobId }, select: { blobId: true } });
    if (!held.length) return 0;
    await tx.checkpoint.deleteMany({ where: { jobId } });
    await freeBlobs(
      tx,
      held.map((c) => c.blobId),
    );
    return held.length;
  });
}
