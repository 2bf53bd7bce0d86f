/** Claiming a delivered job: the row, not the queue job, says whether and where it runs. */
import { isTerminal } from '@edgetune/core';
import { newRun, type JobRun, type RunContext, type RunOutcome } from './context.js';
import { markCancelled } from './finish.js';

/**
 * Claims job `jobId` for this worker: `running`, one more attempt (this run's fencing token), this worker's id.
 * A job still `running` under an earlier attempt (its worker lost the queue lock, or the job was re-queued)
 * is taken over: that attempt's writes are refused from now on and it stops itself. A missing or finished
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
  // The attempt number is the fencing token: the update holds only if no other claim came in since the read.
  const attempt = job.attempts + 1;
  const claimed = await db.job.updateMany({
    where: { id: jobId, status: { in: ['queued', 'running'] }, attempts: job.attempts },
    data: { status: 'running', startedAt: job.startedAt ?? new Date(), attempts: attempt, workerId: ctx.workerId },
  });
  if (!claimed.count) {
    const s = (await db.job.findUnique({ where: { id: jobId }, select: { status: true } }))?.status;
    return s === 'cancelling' ? markCancelled(ctx, jobId) : 'skipped';
  }
  if (job.status === 'running') ctx.log(`[${jobId}] attempt ${job.attempts} was still running: attempt ${attempt} takes the job over`);
  return newRun(ctx, job, attempt, await recordedSteps(ctx, jobId));
}

/**
 * The highest step and validation step whose `metrics` events earlier attempts of job `jobId` recorded
 * (0 when none): a resumed attempt retrains the steps after its checkpoint but does not record them twice.
 * Read after the claim, so no earlier attempt records more.
 */
async function recordedSteps(ctx: RunContext, jobId: string): Promise<{ step: number; evalStep: number }> {
  const [r] = await ctx.db.$queryRaw<{ step: number | null; eval_step: number | null }[]>`
    SELECT max(CASE WHEN jsonb_typeof(data->'step') = 'number' THEN (data->>'step')::int END) AS step,
      max(CASE WHEN jsonb_typeof(data#>'{validation_point,step}') = 'number' THEN (data#>>'{validation_point,step}')::int END) AS eval_step
    FROM job_events WHERE job_id = ${jobId} AND type = 'metrics'`;
  return { step: r?.step ?? 0, evalStep: r?.eval_step ?? 0 };
}
