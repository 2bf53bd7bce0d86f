/** Claiming a delivered job: the row, not the queue job, says whether and where it runs. */
import { isTerminal } from '@edgetune/core';
import { newRun, type JobRun, type RunContext, type RunOutcome } from './context.js';
import { markCancelled } from './finish.js';

/**
 * Claims job `jobId` for this worker: `running`, one more attempt, this worker's id. A missing or finished
 * job, or a delivery by `queueJobId` that is no longer the row's queue job (the job was re-queued under
 * another one meanwhile, so it never runs twice at once), is `skipped`; a job being cancelled ends
 * `cancelled` here.
 * @returns the run, or the outcome when the job does not run.
 * @throws database errors (Prisma) as they come.
 */
export async function claimJob(ctx: RunContext, jobId: string, queueJobId?: string): Promise<JobRun | RunOutcome> {
  const { db } = ctx;
  const job = await db.job.findUnique({ where: { id: jobId } });
  if (!job || isTerminal(job.status)) return 'skipped';
  if (queueJobId && job.queueJobId && job.queueJobId !== queueJobId) {
    ctx.log(`[${jobId}] queue job ${queueJobId} is stale (the job's is ${job.queueJobId}): skipped`);
    return 'skipped';
  }
  if (job.status === 'cancelling') return markCancelled(ctx, jobId);
  const claimed = await db.job.updateMany({
    where: { id: jobId, status: { in: ['queued', 'running'] } },
    data: { status: 'running', startedAt: job.startedAt ?? new Date(), attempts: { increment: 1 }, workerId: ctx.workerId },
  });
  if (!claimed.count) {
    const s = (await db.job.findUnique({ where: { id: jobId }, select: { status: true } }))?.status;
    return s === 'cancelling' ? markCancelled(ctx, jobId) : 'skipped';
  }
  return newRun(ctx, job);
}
