/**
 * How a run ends: succeeded (adapters and result stored), failed (with the job's error), cancelled, or
 * re-queued by a shutdown. Every status change is a compare-and-set on the row's status, so a cancel that
 * came in meanwhile wins, and is fenced by the run's attempt (store fence.ts): a run that a newer attempt
 * took over ends `superseded`, changing nothing.
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
import {
  announceEvents,
  enqueueJob,
  isTransientDbError,
  policyObject,
  putBlob,
  recordEvents,
  StaleAttemptError,
  withDbRetry,
  type NewJobEvent,
  type Prisma,
} from '@edgetune/store';
import { normalizeArtifacts, packAdapters } from '../pack.js';
import { isShutdown } from './cancel.js';
import { addJobEvents, type AbortReason, type JobRun, type RunContext, type RunOutcome } from './context.js';
import { isUserError, jobErrorOf } from './errors.js';
import type { JobInputs } from './inputs.js';
import { planPolicyOf, type PolicyChoice } from './policy.js';
import { compressionResultOf, resultOf, successEvents } from './result.js';

type StoredBlob = Awaited<ReturnType<typeof putBlob>>;

/** Ends job `jobId` `cancelled` when its status is one of `from`. @throws database errors (Prisma) as they come. */
export async function markCancelled(ctx: RunContext, jobId: string, from = ['cancelling', 'running', 'queued']): Promise<'cancelled'> {
  const r = await ctx.db.job.updateMany({
    where: { id: jobId, status: { in: from } },
    data: { status: 'cancelled', finishedAt: new Date(), etaSeconds: null },
  });
  if (r.count) await addJobEvents(ctx, jobId, [{ type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } }]);
  return 'cancelled';
}

/**
 * Changes the run's job with `data` and records `events`, in one transaction while the run owns the job and
 * the job is in one of `statuses`.
 * @throws StaleAttemptError when it is not; database errors (Prisma) once retrying gives up.
 */
async function endRun(run: JobRun, statuses: readonly string[], data: Prisma.JobUpdateInput, events: NewJobEvent[]): Promise<void> {
  const ids = await run.write(async (tx) => {
    await tx.job.update({ where: { id: run.id }, data });
    return recordEvents(tx, run.id, events);
  }, statuses);
  await announceEvents(run.ctx.redis, run.ctx.config.queuePrefix, run.id, ids);
}

/** Whether `err` refused a write of `run` only because its job is being cancelled (the run still owns it). */
function cancellingOwn(run: JobRun, err: unknown): boolean {
  const now = err instanceof StaleAttemptError ? err.current : null;
  return now?.status === 'cancelling' && now.attempts === run.attempt;
}

/** Ends the run's job `cancelled`. @throws StaleAttemptError, database errors (Prisma) as they come. */
export async function cancelRun(run: JobRun): Promise<'cancelled'> {
  await endRun(run, ['running', 'cancelling'], { status: 'cancelled', finishedAt: new Date(), etaSeconds: null }, [
    { type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } },
  ]);
  return 'cancelled';
}

/** Ends the run's job `failed` with `error`. @throws StaleAttemptError, database errors (Prisma) as they come. */
export async function failJob(run: JobRun, error: JobError): Promise<'failed'> {
  await endRun(run, ['running', 'cancelling'], { status: 'failed', error: error as object, finishedAt: new Date(), etaSeconds: null }, [
    { type: 'status', level: 'error', message: `Job failed: ${error.message}`, data: { status: 'failed', error } },
  ]);
  return 'failed';
}

/**
 * Ends a run that threw `err`: taken over by a newer attempt it ends `superseded` without writing; aborted by
 * a shutdown it goes back to the queue, by a cancel it ends `cancelled`; else the job fails with
 * {@link jobErrorOf}, and an infeasible plan is recorded on the job.
 * @throws `err` when it is a transient database error (the job is not failed for the database's restart:
 * the delivery fails, and the worker re-queues the job from its last checkpoint); StaleAttemptError and
 * database errors met while recording the outcome.
 */
export async function settleError(run: JobRun, err: Error, signal: AbortSignal): Promise<RunOutcome> {
  if (err.name === 'StaleAttemptError' || (signal.aborted && signal.reason === ('superseded' satisfies AbortReason))) {
    run.log(`stopped: ${err.name === 'StaleAttemptError' ? err.message : 'the job was re-queued or claimed by a newer attempt'}`);
    return 'superseded';
  }
  if (err.name === 'AbortError' || signal.aborted) {
    if (isShutdown(signal)) return requeue(run);
    return cancelRun(run);
  }
  if (isTransientDbError(err)) throw err;
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
  await run.write((tx) => tx.job.update({ where: { id: run.id }, data: { plan: p as object } })).catch(() => {});
  await run.events([{ level: 'error', message: `Plan: ${describePlan(p)}`, data: { plan: p } }]).catch(() => {});
}

/**
 * Puts a job interrupted by this worker's shutdown back in the queue under queue job `<id>-r<attempts>`;
 * it resumes from its last checkpoint. A job being cancelled ends `cancelled` instead.
 */
export async function requeue(run: JobRun): Promise<RunOutcome> {
  const { db, workerId } = run.ctx;
  const j = await db.job.findUnique({ where: { id: run.id }, select: { status: true } });
  if (!j) return 'skipped';
  if (j.status === 'cancelling') return cancelRun(run);
  const last = await db.checkpoint.findFirst({ where: { jobId: run.id }, orderBy: { step: 'desc' }, select: { step: true } });
  const step = last?.step ?? 0;
  const queueJobId = `${run.id}-r${run.attempt}`;
  try {
    await endRun(run, ['running'], { status: 'queued', etaSeconds: null, queueJobId, step }, [
      {
        type: 'status',
        level: 'warn',
        message: `Worker ${workerId} shut down; job re-queued, it resumes from step ${step}`,
        data: { status: 'queued', resume_step: step },
      },
    ]);
  } catch (e) {
    // a cancel that came in since the read wins
    if (cancellingOwn(run, e)) return cancelRun(run);
    throw e;
  }
  await enqueueJob(run.ctx.queue, run.id, queueJobId);
  return 'requeued';
}

/**
 * Ends a trained and evaluated run: stores its adapters (PEFT and edge bundle), then marks the job
 * `succeeded` with its result, plan and adapters in one transaction, unless a cancel came in meanwhile
 * (then the blobs are dropped and the job ends `cancelled`).
 * @throws StaleAttemptError when a newer attempt owns the job (the blobs are dropped); database, blob and
 * tar errors as they come.
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
  try {
    await completeJob(run, report, result, plan, stored);
    return 'succeeded';
  } catch (e) {
    // not this attempt's job any more, or being cancelled: the adapters are nobody's
    await db.blob.deleteMany({ where: { id: { in: stored.map((s) => s.blob.id) } } });
    if (cancellingOwn(run, e)) return cancelRun(run);
    throw e;
  }
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
  for (const [format, file] of Object.entries(tars))
    stored.push({ format, blob: await withDbRetry(() => putBlob(db, file, 'application/x-tar')) });
  return stored;
}

/**
 * Marks the run's job `succeeded` with its result, plan, adapters and success events, in one transaction
 * while the run owns the job and it is `running`.
 * @throws StaleAttemptError when it is not (nothing is written); database errors (Prisma) once retrying gives up.
 */
async function completeJob(
  run: JobRun,
  report: TuneJobReport,
  result: Record<string, unknown>,
  plan: JobPlan | null,
  stored: { format: string; blob: StoredBlob }[],
): Promise<void> {
  const { job, id: jobId } = run;
  const ids = await run.write(
    async (tx) => {
      await tx.job.update({
        where: { id: jobId },
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
      await tx.adapter.deleteMany({ where: { jobId } });
      for (const s of stored)
        await tx.adapter.create({
          data: { id: newId('adapter'), jobId, format: s.format, blobId: s.blob.id, sha256: s.blob.sha256, size: BigInt(s.blob.size) },
        });
      return recordEvents(tx, jobId, successEvents(plan, result));
    },
    ['running'],
  );
  await announceEvents(run.ctx.redis, run.ctx.config.queuePrefix, jobId, ids);
}
