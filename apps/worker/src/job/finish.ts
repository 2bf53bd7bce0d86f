/**
 * How a run ends: succeeded (adapters and result stored), failed (with the job's error), cancelled, or
 * re-queued by a shutdown. Every status change is a compare-and-set on the row's status, so a cancel that
 * came in meanwhile wins.
 */
import type { TuneJobReport } from '@edgetune/engine';
import {
  admissionOf,
  describePlan,
  jobPlanOf,
  newId,
  withTimeBudget,
  type Hyperparameters,
  type JobError,
  type JobPlan,
  type Plan,
} from '@edgetune/core';
import { enqueueJob, policyObject, putBlob } from '@edgetune/store';
import { normalizeArtifacts, packAdapters } from '../pack.js';
import { isShutdown } from './cancel.js';
import { addJobEvents, type JobRun, type RunContext, type RunOutcome } from './context.js';
import { isUserError, jobErrorOf } from './errors.js';
import type { JobInputs } from './inputs.js';
import { planPolicyOf, type PolicyChoice } from './policy.js';
import { compressionResultOf, resultOf, successEvents } from './result.js';

type StoredBlob = Awaited<ReturnType<typeof putBlob>>;

/** Ends job `jobId` `cancelled` when its status is one of `from`. @throws database errors (Prisma) as they come. */
export async function markCancelled(ctx: RunContext, jobId: string, from = ['cancelling', 'running', 'queued']): Promise<'cancelled'> {
  await ctx.db.job.updateMany({
    where: { id: jobId, status: { in: from } },
    data: { status: 'cancelled', finishedAt: new Date(), etaSeconds: null },
  });
  await addJobEvents(ctx, jobId, [{ type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } }]);
  return 'cancelled';
}

/** Ends the run's job `failed` with `error`. @throws database errors (Prisma) as they come. */
export async function failJob(run: JobRun, error: JobError): Promise<'failed'> {
  await run.ctx.db.job.updateMany({
    where: { id: run.id, status: { in: ['running', 'cancelling'] } },
    data: { status: 'failed', error: error as object, finishedAt: new Date(), etaSeconds: null },
  });
  await run.events([{ type: 'status', level: 'error', message: `Job failed: ${error.message}`, data: { status: 'failed', error } }]);
  return 'failed';
}

/**
 * Ends a run that threw `err`: aborted by a shutdown it goes back to the queue, by a cancel it ends
 * `cancelled`; else the job fails with {@link jobErrorOf}, and an infeasible plan is recorded on the job.
 */
export async function settleError(run: JobRun, err: Error, signal: AbortSignal): Promise<RunOutcome> {
  if (err.name === 'AbortError' || signal.aborted) {
    if (isShutdown(signal)) return requeue(run);
    return markCancelled(run.ctx, run.id);
  }
  run.log(`${isUserError(err) ? 'job error' : 'internal error'}: ${err.stack ?? err.message}`);
  if (err.name === 'PlanNotFeasibleError') await recordInfeasiblePlan(run, (err as Error & { plan: Plan }).plan);
  return failJob(run, jobErrorOf(err));
}

/** Records the plan that did not fit on the job and in its events (best effort: the failure follows anyway). */
async function recordInfeasiblePlan(run: JobRun, plan: Plan): Promise<void> {
  const p = jobPlanOf(plan, 'worker', {
    admission: admissionOf((run.job.plan ?? null) as JobPlan | null),
    deviceSource: { source: 'worker', workerId: run.ctx.workerId },
  });
  await run.ctx.db.job.update({ where: { id: run.id }, data: { plan: p as object } }).catch(() => {});
  await run.events([{ level: 'error', message: `Plan: ${describePlan(p)}`, data: { plan: p } }]).catch(() => {});
}

/**
 * Puts a job interrupted by this worker's shutdown back in the queue under queue job `<id>-r<attempts>`;
 * it resumes from its last checkpoint. A job being cancelled ends `cancelled` instead.
 */
export async function requeue(run: JobRun): Promise<RunOutcome> {
  const { db, workerId } = run.ctx;
  const j = await db.job.findUnique({ where: { id: run.id }, select: { status: true, attempts: true } });
  if (!j) return 'skipped';
  if (j.status === 'cancelling') return markCancelled(run.ctx, run.id, ['cancelling']);
  const last = await db.checkpoint.findFirst({ where: { jobId: run.id }, orderBy: { step: 'desc' }, select: { step: true } });
  const queueJobId = `${run.id}-r${j.attempts}`;
  await db.job.updateMany({
    where: { id: run.id, status: 'running' },
    data: { status: 'queued', etaSeconds: null, queueJobId, step: last?.step ?? 0 },
  });
  await run.events([
    {
      type: 'status',
      level: 'warn',
      message: `Worker ${workerId} shut down; job re-queued, it resumes from step ${last?.step ?? 0}`,
      data: { status: 'queued', resume_step: last?.step ?? 0 },
    },
  ]);
  await enqueueJob(run.ctx.queue, run.id, queueJobId);
  return 'requeued';
}

/**
 * Ends a trained and evaluated run: stores its adapters (PEFT and edge bundle), then marks the job
 * `succeeded` with its result, plan and adapters in one transaction, unless a cancel came in meanwhile
 * (then the blobs are dropped and the job ends `cancelled`).
 * @throws database, blob and tar errors as they come.
 */
export async function succeed(run: JobRun, inputs: JobInputs, report: TuneJobReport, policy: PolicyChoice): Promise<RunOutcome> {
  const { db, workerId } = run.ctx;
  const budget = (run.job.hyperparameters as unknown as Hyperparameters).time_budget_s ?? null;
  const plan = report.plan
    ? withTimeBudget(
        jobPlanOf(report.plan.plan, 'worker', {
          measured: report.plan.measured,
          policy: planPolicyOf(policy),
          admission: admissionOf((run.job.plan ?? null) as JobPlan | null),
          deviceSource: { source: 'worker', workerId },
        }),
        budget,
        run.job.totalSteps,
      )
    : null;
  const stored = await storeAdapters(run, inputs, policy);
  run.tick('adapters stored');
  const result: Record<string, unknown> = { ...resultOf(report), compression: compressionResultOf(report, policy.used) };
  if (!(await completeJob(run, report, result, plan, stored))) {
    await db.blob.deleteMany({ where: { id: { in: stored.map((s) => s.blob.id) } } });
    return markCancelled(run.ctx, run.id);
  }
  await run.events(successEvents(plan, result));
  return 'succeeded';
}

/** Packs the engine's output as the job's adapter archives and stores them as blobs (not yet the job's). */
async function storeAdapters(run: JobRun, inputs: JobInputs, policy: PolicyChoice): Promise<{ format: string; blob: StoredBlob }[]> {
  const { db } = run.ctx;
  const { job } = run;
  const used = policy.used;
  const policyRow = used ? await db.policy.findUnique({ where: { id: used.id } }) : null;
  const meta = normalizeArtifacts(inputs.outDir, job.model, used?.id ?? null);
  const tars = await packAdapters(inputs.outDir, inputs.work, {
    jobId: run.id,
    modelId: job.model,
    ...meta,
    policy: policyRow ? policyObject(policyRow) : null,
    compression: policy.budget,
  });
  const stored: { format: string; blob: StoredBlob }[] = [];
  for (const [format, file] of Object.entries(tars)) stored.push({ format, blob: await putBlob(db, file, 'application/x-tar') });
  return stored;
}

/** Marks a running job `succeeded` with its result, plan and adapters. @returns false when it was no longer running. */
async function completeJob(
  run: JobRun,
  report: TuneJobReport,
  result: Record<string, unknown>,
  plan: JobPlan | null,
  stored: { format: string; blob: StoredBlob }[],
): Promise<boolean> {
  const { job, id: jobId } = run;
  return run.ctx.db.$transaction(async (tx) => {
    const r = await tx.job.updateMany({
      where: { id: jobId, status: 'running' },
      data: {
        status: 'succeeded',
        finishedAt: new Date(),
        step: report.steps,
        etaSeconds: null,
        result: result as object,
        trainedTokens: BigInt(report.tokens),
        ...(plan ? { plan: plan as object } : {}),
        fineTunedModel: `ft:${job.model}:${job.suffix ?? ''}:${jobId}`,
      },
    });
    if (!r.count) return false;
    await tx.adapter.deleteMany({ where: { jobId } });
    for (const s of stored)
      await tx.adapter.create({
        data: { id: newId('adapter'), jobId, format: s.format, blobId: s.blob.id, sha256: s.blob.sha256, size: BigInt(s.blob.size) },
      });
    return true;
  });
}
