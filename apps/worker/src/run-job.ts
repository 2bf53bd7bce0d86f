/**
 * Runs one tuning job inside a sandboxed processor, as a sequence of steps (job/): claim it, fetch its
 * inputs, resolve its LUC policy, tune with progress events and checkpoints, and finish. Cancel (DB status
 * `cancelling`, or the BullMQ abort signal with reason `cancel`) stops it between steps; reason `shutdown`
 * checkpoints the current step and re-queues it. Every job runs under the planner for its device (the
 * job's `device`, else this worker's free memory and cores) and records the plan with what was measured.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { followDelivery, pollForCancel } from './job/cancel.js';
import { claimJob } from './job/claim.js';
import type { RunContext, RunOutcome } from './job/context.js';
import { failJob, settleError, succeed } from './job/finish.js';
import { fetchInputs, openWorkspace } from './job/inputs.js';
import { resolvePolicy } from './job/policy.js';
import { ProgressReporter, reportStarted } from './job/progress.js';
import { loadEngine, tune } from './job/tune.js';

export type { AbortReason, RunContext, RunOutcome } from './job/context.js';

/**
 * Runs job `jobId` once. Never throws for job-level failures: they end up in the job row. With
 * `queueJobId` (the BullMQ job that delivered it), a delivery that is no longer the row's queue job (the
 * job was re-queued under another one meanwhile) is skipped. The run is attempt `attempts + 1` of the job,
 * and every write it makes is fenced by that number: once a newer attempt claims the job (a lock that
 * expired while this one still ran, a re-queue), this run's writes are refused and it stops as
 * `superseded`, leaving the job to the newer attempt. Transient database errors are retried for minutes.
 * @throws database errors (Prisma) met while recording the outcome, or once retrying gave up: the job is
 * then not failed, but re-queued from its last checkpoint by the worker (reconcile.ts).
 */
export async function runJob(ctx: RunContext, jobId: string, signal?: AbortSignal, queueJobId?: string): Promise<RunOutcome> {
  const run = await claimJob(ctx, jobId, queueJobId);
  if (typeof run === 'string') return run;
  if (!existsSync(join(run.modelDir, 'config.json'))) {
    return failJob(run, {
      code: 'model_not_available',
      message: `Worker ${ctx.workerId} has no base model ${run.job.model} in ${ctx.config.modelsDir}`,
      param: 'model',
    });
  }
  const work = await openWorkspace(run);
  const abort = followDelivery(signal);
  let stopPolling = () => {};
  let progress: ProgressReporter | null = null;
  try {
    const inputs = await fetchInputs(run, work);
    if ('error' in inputs) return await failJob(run, inputs.error);
    await reportStarted(run, inputs.resumeStep);
    stopPolling = pollForCancel(run, abort.controller);
    run.tick('inputs fetched');
    const engine = await loadEngine(run);
    run.tick('engine loaded');
    const policy = await resolvePolicy(run, inputs.trainFile);
    if ('error' in policy) return await failJob(run, policy.error);
    progress = new ProgressReporter(run, abort.controller.signal);
    const report = await tune(run, engine, inputs, policy, progress, abort.controller.signal);
    run.tick('tuned');
    await progress.flush();
    return await succeed(run, inputs, report, policy);
  } catch (e) {
    await progress?.flush().catch(() => {});
    return await settleError(run, e as Error, abort.controller.signal).catch((err: Error) => {
      if (err.name !== 'StaleAttemptError') throw err;
      run.log(`stopped: ${err.message}`);
      return 'superseded' as const;
    });
  } finally {
    stopPolling();
    abort.release();
    await rm(work, { recursive: true, force: true });
  }
}
