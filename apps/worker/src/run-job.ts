/**
 * Runs one tuning job inside a sandboxed processor: claims it in the database, fetches its files and
 * latest checkpoint, runs the engine with progress/metrics events and checkpoints, and stores the
 * adapters and the report. Cancel (DB status `cancelling`, or the BullMQ abort signal with reason
 * `cancel`) stops it between steps; reason `shutdown` checkpoints the current step and re-queues it.
 *
 * Compressed jobs reuse the stored LUC policy of their model's weights (the content fingerprint of this
 * worker's copy) and budget, or store the one the engine profiles (policies.ts settles races). Every job runs under the planner for its device (the job's
 * `device`, else this worker's free memory and cores) and records the plan with what was measured.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type { StepReport, TuneJobOptions, TuneJobReport } from '@edgetune/engine';
import type { Plan } from '@edgetune/core';
import { admissionOf, describePlan, fingerprintStats, isTerminal, jobPlanOf, modelFingerprint, readModelSummary, type Config, type Hyperparameters, type JobDevice, type JobError, type JobPlan, type Method, type QueueJobData, newId } from '@edgetune/core';
import { addEvents, blobToFile, enginePolicyOf, enqueueJob, findPolicy, policyObject, putBlob, storePolicy, type NewJobEvent, type PolicyRow, type PrismaClient } from '@edgetune/store';
import { engineTuneOptions } from './engine-options.js';
import { defaultMemoryBudget } from './device.js';
import { normalizeArtifacts, packAdapters, packTar, unpackTar } from './pack.js';

/** What a job run needs. */
export interface RunContext {
  config: Config;
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  workerId: string;
  /** the engine (loaded lazily, once per process: it pulls TF.js), its backend set to `blasThreads` (default: the engine's) */
  engine: (blasThreads?: number) => Promise<typeof import('@edgetune/engine')>;
  /**
   * this process's RSS once the engine was first loaded, before its first job, bytes: the planner's base
   * (DeviceProfile.baseRssBytes; a sandbox also holds Prisma, BullMQ and Redis clients). Undefined before the
   * engine is loaded, or where no such reading exists (the forecast then assumes a bare engine process).
   */
  baseRssBytes?: () => number | undefined;
  log: (line: string) => void;
}

/** How a run ended. */
export type RunOutcome = 'succeeded' | 'failed' | 'cancelled' | 'requeued' | 'skipped';

/** Reasons passed to the abort signal. */
export type AbortReason = 'cancel' | 'shutdown';

/** Engine error names that are the user's doing (bad data, model, configuration). */
const USER_ERRORS: Record<string, string> = {
  DatasetError: 'invalid_dataset',
  ModelConfigError: 'invalid_model',
  AdapterError: 'invalid_adapter',
  ExitConfigError: 'invalid_exit_layers',
  EvaluationError: 'evaluation_failed',
  PlanNotFeasibleError: 'plan_does_not_fit',
  PolicyError: 'invalid_compression',
};

/** Validation metrics and run totals as the job's `result`. */
export function resultOf(r: TuneJobReport): Record<string, unknown> {
  const v = r.validation;
  return {
    voting_rule: r.votingRule,
    voted_accuracy: v && r.votingRule ? v.voted[r.votingRule]?.accuracy ?? null : null,
    exits: v ? v.perExit.map((e) => ({ layer: e.layer, accuracy: e.accuracy, loss: e.loss, perplexity: e.perplexity })) : [],
    voted: v ? v.voted : {},
    validation_examples: r.validationExamples,
    train_examples: r.trainExamples,
    steps: r.steps,
    tokens: r.tokens,
    tokens_per_sec: Math.round(r.tokensPerSec * 10) / 10,
    train_seconds: Math.round(r.trainMs) / 1000,
    final_loss: Number.isFinite(r.finalLoss) ? r.finalLoss : null,
    compression: null,
  };
}

/** `result.compression` of a compressed run. */
export function compressionResultOf(r: TuneJobReport, policy: { id: string; reused: boolean } | null): Record<string, unknown> | null {
  const c = r.compression;
  if (!c) return null;
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  return {
    policy_id: policy?.id ?? null, policy_reused: policy?.reused ?? false, stored_bytes: c.report.storedBytes, dense_bytes: c.report.denseBytes,
    mean_sparsity: Math.round(mean(c.policy.sparsity) * 1e6) / 1e6, mean_bits: Math.round(mean(c.policy.bits) * 1e6) / 1e6,
  };
}

/**
 * Runs job `jobId` once. Never throws for job-level failures: they end up in the job row. With
 * `queueJobId` (the BullMQ job that delivered it), a delivery that is no longer the row's queue job (the
 * job was re-queued under another one meanwhile) is skipped, so one job never runs twice at once.
 */
export async function runJob(ctx: RunContext, jobId: string, signal?: AbortSignal, queueJobId?: string): Promise<RunOutcome> {
  const { db, config } = ctx;
  const prefix = config.queuePrefix;
  const events = (list: NewJobEvent[]) => addEvents(db, ctx.redis, prefix, jobId, list);
  const now = () => new Date();

  const j = await db.job.findUnique({ where: { id: jobId } });
  if (!j || isTerminal(j.status)) return 'skipped';
  if (queueJobId && j.queueJobId && j.queueJobId !== queueJobId) {
    ctx.log(`[${jobId}] queue job ${queueJobId} is stale (the job's is ${j.queueJobId}): skipped`);
    return 'skipped';
  }
  const markCancelled = async () => {
    await db.job.updateMany({ where: { id: jobId, status: { in: ['cancelling', 'running', 'queued'] } }, data: { status: 'cancelled', finishedAt: now(), etaSeconds: null } });
    await events([{ type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } }]);
    return 'cancelled' as const;
  };
  if (j.status === 'cancelling') return markCancelled();
  const claimed = await db.job.updateMany({
    where: { id: jobId, status: { in: ['queued', 'running'] } },
    data: { status: 'running', startedAt: j.startedAt ?? now(), attempts: { increment: 1 }, workerId: ctx.workerId },
  });
  if (!claimed.count) {
    const s = (await db.job.findUnique({ where: { id: jobId }, select: { status: true } }))?.status;
    return s === 'cancelling' ? markCancelled() : 'skipped';
  }
  const attempt = j.attempts + 1;
  const t0 = Date.now();
  const tick = (what: string) => ctx.log(`[${jobId}] +${Date.now() - t0} ms: ${what}`);
  const fail = async (error: JobError): Promise<'failed'> => {
    await db.job.updateMany({ where: { id: jobId, status: { in: ['running', 'cancelling'] } }, data: { status: 'failed', error: error as object, finishedAt: now(), etaSeconds: null } });
    await events([{ type: 'status', level: 'error', message: `Job failed: ${error.message}`, data: { status: 'failed', error } }]);
    return 'failed';
  };

  const modelDir = join(config.modelsDir, j.model);
  if (!existsSync(join(modelDir, 'config.json'))) {
    return fail({ code: 'model_not_available', message: `Worker ${ctx.workerId} has no base model ${j.model} in ${config.modelsDir}`, param: 'model' });
  }
  await mkdir(config.workDir, { recursive: true });
  const work = await mkdtemp(join(config.workDir, `${jobId}-`));
  const outDir = join(work, 'out');
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason ?? 'cancel');
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  let poll: NodeJS.Timeout | undefined;
  let flush = async () => {};
  try {
    const files: { id: string; param: string; path: string }[] = [{ id: j.trainingFile, param: 'training_file', path: join(work, 'train.jsonl') }];
    if (j.validationFile) files.push({ id: j.validationFile, param: 'validation_file', path: join(work, 'validation.jsonl') });
    for (const f of files) {
      const row = await db.file.findUnique({ where: { id: f.id }, select: { blobId: true } });
      if (!row) return await fail({ code: 'file_not_found', message: `File ${f.id} no longer exists`, param: f.param });
      await blobToFile(db, row.blobId, f.path);
    }
    const ckpt = await db.checkpoint.findFirst({ where: { jobId }, orderBy: { step: 'desc' } });
    if (ckpt) {
      const tarFile = join(work, 'checkpoint.tar');
      await blobToFile(db, ckpt.blobId, tarFile);
      await unpackTar(tarFile, join(outDir, 'checkpoint'));
      await db.job.update({ where: { id: jobId }, data: { step: ckpt.step } });
    }
    await events([{
      type: 'status',
      message: ckpt ? `Job resumed from checkpoint at step ${ckpt.step} (attempt ${attempt}) on ${ctx.workerId}` : `Job started (attempt ${attempt}) on ${ctx.workerId}`,
      data: { status: 'running', attempt, worker_id: ctx.workerId, resumed_from_step: ckpt?.step ?? null },
    }]);

    // cancel requests also arrive by polling the row (a pub/sub message can be missed)
    poll = setInterval(() => {
      db.job.findUnique({ where: { id: jobId }, select: { status: true } }).then((r) => {
        if (r && (r.status === 'cancelling' || isTerminal(r.status)) && !ac.signal.aborted) ac.abort('cancel');
      }, () => {});
    }, 1000);

    const method = j.method as unknown as Method;
    const hp = j.hyperparameters as unknown as Hyperparameters;
    const device = (j.device ?? null) as JobDevice | null;
    const wantThreads = device?.threads ?? config.deviceThreads ?? undefined;
    tick('inputs fetched');
    const engine = await ctx.engine(wantThreads ? Math.min(wantThreads, availableParallelism()) : undefined);
    tick('engine loaded');

    // LUC: reuse the stored policy of this model's weights and budget, else store the one the engine profiles.
    const budget = method.edge_llm.compression ?? null;
    let policyUsed: { id: string; reused: boolean } | null = null;
    let compression: TuneJobOptions['compression'];
    if (budget) {
      const layers = readModelSummary(modelDir, j.model).numLayers;
      // the weights this worker actually has (a policy profiled on other weights with the same model id is not theirs)
      const fingerprint = await modelFingerprint(modelDir);
      if (!fingerprint) {
        return await fail({ code: 'invalid_model', message: `Base model ${j.model} on worker ${ctx.workerId} has no complete weights (model.safetensors or the shards of model.safetensors.index.json)`, param: 'model' });
      }
      tick(`model fingerprint ${fingerprint.slice(0, 12)} (${fingerprintStats.filesHashed} model files hashed by this process)`);
      // keep base_models current when this folder changed since it was registered (the API plans with it)
      await db.baseModel.updateMany({ where: { id: j.model, OR: [{ fingerprint: null }, { fingerprint: { not: fingerprint } }] }, data: { fingerprint } });
      const stored = await findPolicy(db, j.model, fingerprint, budget);
      const usable = stored && stored.numLayers === layers ? stored : null;
      if (stored && !usable) ctx.log(`[${jobId}] stored policy ${stored.id} has ${stored.numLayers} layers, the model ${layers}: profiling afresh`);
      const POLICY_MESSAGES = {
        reused: 'reused (stored for this model and budget: no profiling)',
        created: 'created from a fresh sensitivity profile and stored',
        adopted: 'stored meanwhile by another job with this model and budget: compressing with it',
        resumed: 'stored by an earlier attempt of this job: compressing with it again',
      } as const;
      const usePolicy = async (row: PolicyRow, how: keyof typeof POLICY_MESSAGES) => {
        policyUsed = { id: row.id, reused: how === 'reused' || how === 'adopted' };
        await db.job.update({ where: { id: jobId }, data: { policyId: row.id } });
        ctx.log(`[${jobId}] LUC policy ${row.id} ${POLICY_MESSAGES[how]}`);
        await events([{ message: `Compression policy ${row.id} ${POLICY_MESSAGES[how]}`, data: { policy_id: row.id, policy_reused: policyUsed.reused, budget, model_fingerprint: fingerprint } }]);
      };
      if (usable) await usePolicy(usable, usable.sourceJobId === jobId ? 'resumed' : 'reused');
      compression = {
        targetSparsity: budget.target_sparsity, avgBits: budget.avg_bits, method: budget.method, sparsityRule: budget.sparsity_rule,
        bitsRule: budget.bits_rule, groupSize: budget.group_size,
        policy: usable ? enginePolicyOf(usable) : undefined,
        onPolicy: async (policy, sensitivity) => {
          if (usable) return;
          const { row, created } = await storePolicy(db, {
            modelId: j.model, fingerprint, compression: budget, policy, sensitivity, jobId,
            calibrationDescription: sensitivity?.calibration.description.replace(resolve(files[0].path), `training file ${j.trainingFile}`),
          });
          if (created) return usePolicy(row, 'created');
          if (row.numLayers !== policy.sparsity.length) return;
          // Another job stored this budget's policy first: compress with it, so every job of the budget runs the same policy.
          Object.assign(policy, enginePolicyOf(row));
          await usePolicy(row, 'adopted');
        },
      };
    }
    // The planner fits the run to the job's device, else this worker's free memory.
    const baseRss = ctx.baseRssBytes?.();
    const deviceOpt = {
      memoryBudgetBytes: device?.memory_budget_bytes ?? defaultMemoryBudget(config),
      ...(baseRss ? { baseRssBytes: baseRss } : {}),
      ...(config.deviceGflops ? { matmulGflops: config.deviceGflops } : {}),
    };
    const admission = admissionOf((j.plan ?? null) as JobPlan | null);
    const policyRef = () => (budget ? { id: (policyUsed as { id: string } | null)?.id ?? null, source: 'run' as const } : null);
    // Step metrics are written in batches (every ~250 ms, and before checkpoints and the end).
    const pending: NewJobEvent[] = [];
    let progress: { step: number; etaSeconds: number; latestMetrics: object } | null = null;
    let lastFlush = Date.now();
    flush = async () => {
      lastFlush = Date.now();
      if (pending.length) await events(pending.splice(0));
      if (progress) {
        const p = progress;
        progress = null;
        await db.job.update({ where: { id: jobId }, data: p });
      }
    };
    let lastReport: StepReport | null = null;
    const report = await engine.runTuning({
      modelDir,
      trainFile: files[0].path,
      validationFile: files[1]?.path,
      outDir,
      maxLength: hp.max_length,
      tune: engineTuneOptions(method, hp, j.seed, j.totalSteps),
      compression,
      device: deviceOpt,
      checkpointEvery: j.checkpointEvery,
      // On shutdown the step in progress is checkpointed before the abort takes effect at the top of
      // the engine's loop (tests/worker/jobs.test.ts "SIGTERM").
      shouldCheckpoint: () => ac.signal.aborted && ac.signal.reason === 'shutdown',
      resume: !!ckpt,
      signal: ac.signal,
      log: (line) => ctx.log(`[${jobId}] ${line}`),
      onStep: async (r) => {
        lastReport = r;
        const metrics = {
          step: r.step, total_steps: r.totalSteps, train_loss: r.loss, learning_rate: r.lr, grad_norm: r.gradNorm, window: r.window, exit_layer: r.exitLayer,
          tokens: r.tokens, tokens_per_sec: Math.round(r.tokensPerSec * 10) / 10, step_ms: Math.round(r.stepMs), elapsed_ms: Math.round(r.elapsedMs), eta_seconds: Math.round(r.etaMs / 1000),
        };
        pending.push({ type: 'metrics', message: `step ${r.step}/${r.totalSteps}: loss ${r.loss.toFixed(4)} (exit ${r.exitLayer})`, data: metrics });
        progress = { step: r.step, etaSeconds: Math.round(r.etaMs / 1000), latestMetrics: metrics };
        if (Date.now() - lastFlush >= 250 || r.step === r.totalSteps || ac.signal.aborted) await flush();
      },
      onCheckpoint: async (step, dir) => {
        const shutdown = ac.signal.aborted && ac.signal.reason === 'shutdown';
        if (step % j.checkpointEvery !== 0 && step !== j.totalSteps && !shutdown) return;
        await flush();
        const tarFile = join(work, `ckpt-${step}.tar`);
        await packTar(dir, ['trainer.safetensors', 'trainer_state.json'], tarFile);
        const blob = await putBlob(db, tarFile, 'application/x-tar');
        await rm(tarFile, { force: true });
        const metrics = lastReport ? { train_loss: lastReport.loss, exit_layer: lastReport.exitLayer, window: lastReport.window } : {};
        const existing = await db.checkpoint.findUnique({ where: { jobId_step: { jobId, step } } });
        if (existing) {
          await db.$transaction([db.checkpoint.update({ where: { id: existing.id }, data: { blobId: blob.id, metrics } }), db.blob.delete({ where: { id: existing.blobId } })]);
        } else {
          await db.checkpoint.create({ data: { id: newId('checkpoint'), jobId, step, metrics, blobId: blob.id } });
        }
        await events([{ message: `Checkpoint saved at step ${step}`, data: { step, bytes: blob.size } }]);
      },
    });

    tick('tuned');
    await flush();
    const plan = report.plan ? jobPlanOf(report.plan.plan, 'worker', { measured: report.plan.measured, policy: policyRef(), admission, deviceSource: { source: 'worker', workerId: ctx.workerId } }) : null;
    // Trained and evaluated: store the adapters, then finish (unless a cancel came in meanwhile).
    const used = policyUsed as { id: string; reused: boolean } | null;
    const policyRow = used ? await db.policy.findUnique({ where: { id: used.id } }) : null;
    const meta = normalizeArtifacts(outDir, j.model, used?.id ?? null);
    const tars = await packAdapters(outDir, work, { jobId, modelId: j.model, ...meta, policy: policyRow ? policyObject(policyRow) : null, compression: budget });
    const stored: { format: string; blob: Awaited<ReturnType<typeof putBlob>> }[] = [];
    for (const [format, file] of Object.entries(tars)) stored.push({ format, blob: await putBlob(db, file, 'application/x-tar') });
    tick('adapters stored');
    const result: Record<string, unknown> = { ...resultOf(report), compression: compressionResultOf(report, used) };
    const done = await db.$transaction(async (tx) => {
      const r = await tx.job.updateMany({
        where: { id: jobId, status: 'running' },
        data: {
          status: 'succeeded', finishedAt: now(), step: report.steps, etaSeconds: null, result: result as object, trainedTokens: BigInt(report.tokens),
          ...(plan ? { plan: plan as object } : {}),
          fineTunedModel: `ft:${j.model}:${j.suffix ?? ''}:${jobId}`,
        },
      });
      if (!r.count) return false;
      await tx.adapter.deleteMany({ where: { jobId } });
      for (const s of stored) await tx.adapter.create({ data: { id: newId('adapter'), jobId, format: s.format, blobId: s.blob.id, sha256: s.blob.sha256, size: BigInt(s.blob.size) } });
      return true;
    });
    if (!done) {
      await db.blob.deleteMany({ where: { id: { in: stored.map((s) => s.blob.id) } } });
      return markCancelled();
    }
    const acc = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    await events([
      ...(plan?.measured ? [{
        message: `Plan forecast vs measured: peak RSS ${mib(plan.forecast.peak_rss_bytes)} vs ${mib(plan.measured.peak_rss_bytes)}, TF.js peak ${mib(plan.forecast.peak_tf_bytes)} vs ${mib(plan.measured.peak_tf_bytes)}, `
          + `step ${Math.round(plan.forecast.step_ms)} vs ${Math.round(plan.measured.step_ms)} ms`,
        data: { plan },
      }] : []),
      {
        type: 'metrics',
        message: `Validation: ${(result.exits as { layer: number; accuracy: number | null }[]).map((e) => `exit ${e.layer} ${acc(e.accuracy)}`).join(', ')}; voted (${result.voting_rule ?? 'n/a'}) ${acc(result.voted_accuracy as number | null)}`,
        data: { validation: result },
      },
      { type: 'status', message: 'Job succeeded', data: { status: 'succeeded' } },
    ]);
    return 'succeeded';
  } catch (e) {
    const err = e as Error;
    await flush().catch(() => {});
    if (err.name === 'AbortError' || ac.signal.aborted) {
      if (ac.signal.reason === 'shutdown') return await requeue(ctx, jobId);
      return await markCancelled();
    }
    const code = USER_ERRORS[err.name];
    ctx.log(`[${jobId}] ${code ? 'job error' : 'internal error'}: ${err.stack ?? err.message}`);
    if (err.name === 'PlanNotFeasibleError') {
      const p = jobPlanOf((err as Error & { plan: Plan }).plan, 'worker', { admission: admissionOf((j.plan ?? null) as JobPlan | null), deviceSource: { source: 'worker', workerId: ctx.workerId } });
      await db.job.update({ where: { id: jobId }, data: { plan: p as object } }).catch(() => {});
      await events([{ level: 'error', message: `Plan: ${describePlan(p)}`, data: { plan: p } }]).catch(() => {});
    }
    const param = err.name === 'DatasetError' ? ((err as { source?: string }).source?.endsWith('validation.jsonl') ? 'validation_file' : 'training_file')
      : err.name === 'ExitConfigError' ? 'method.edge_llm.exit_layers'
        : err.name === 'PlanNotFeasibleError' ? 'device.memory_budget_bytes'
          : err.name === 'PolicyError' ? 'method.edge_llm.compression' : null;
    return await fail({ code: code ?? 'internal_error', message: err.message, param });
  } finally {
    clearInterval(poll);
    signal?.removeEventListener('abort', onAbort);
    await rm(work, { recursive: true, force: true });
  }
}

/** Puts a job interrupted by a worker shutdown back in the queue; it resumes from its last checkpoint. */
async function requeue(ctx: RunContext, jobId: string): Promise<RunOutcome> {
  const { db } = ctx;
  const j = await db.job.findUnique({ where: { id: jobId }, select: { status: true, attempts: true } });
  if (!j) return 'skipped';
  if (j.status === 'cancelling') {
    await db.job.updateMany({ where: { id: jobId, status: 'cancelling' }, data: { status: 'cancelled', finishedAt: new Date(), etaSeconds: null } });
    await addEvents(db, ctx.redis, ctx.config.queuePrefix, jobId, [{ type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } }]);
    return 'cancelled';
  }
  const last = await db.checkpoint.findFirst({ where: { jobId }, orderBy: { step: 'desc' }, select: { step: true } });
  const queueJobId = `${jobId}-r${j.attempts}`;
  await db.job.updateMany({ where: { id: jobId, status: 'running' }, data: { status: 'queued', etaSeconds: null, queueJobId, step: last?.step ?? 0 } });
  await addEvents(db, ctx.redis, ctx.config.queuePrefix, jobId, [{
    type: 'status', level: 'warn', message: `Worker ${ctx.workerId} shut down; job re-queued, it resumes from step ${last?.step ?? 0}`, data: { status: 'queued', resume_step: last?.step ?? 0 },
  }]);
  await enqueueJob(ctx.queue, jobId, queueJobId);
  return 'requeued';
}
