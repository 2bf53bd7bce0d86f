/**
 * Runs one tuning job inside a sandboxed processor: claims it in the database, fetches its files and
 * latest checkpoint, runs the engine with progress/metrics events and checkpoints, and stores the
 * adapters and the report. Cancel (DB status `cancelling`, or the BullMQ abort signal with reason
 * `cancel`) stops it between steps; reason `shutdown` checkpoints the current step and re-queues it.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type { StepReport, TuneJobReport } from '@edgetune/engine';
import {
  addEvents, blobToFile, isTerminal, putBlob, type Config, type Hyperparameters, type JobError, type Method, type NewJobEvent,
  type PrismaClient, type QueueJobData, newId,
} from '@edgetune/api/shared';
import { engineTuneOptions } from './engine-options.js';
import { normalizeArtifacts, packAdapters, packTar, unpackTar } from './pack.js';

/** What a job run needs. */
export interface RunContext {
  config: Config;
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  workerId: string;
  /** the engine (loaded lazily, once per process: it pulls TF.js) */
  engine: () => Promise<typeof import('@edgetune/engine')>;
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
  };
}

/** Runs job `jobId` once. Never throws for job-level failures: they end up in the job row. */
export async function runJob(ctx: RunContext, jobId: string, signal?: AbortSignal): Promise<RunOutcome> {
  const { db, config } = ctx;
  const prefix = config.queuePrefix;
  const events = (list: NewJobEvent[]) => addEvents(db, ctx.redis, prefix, jobId, list);
  const now = () => new Date();

  const j = await db.job.findUnique({ where: { id: jobId } });
  if (!j || isTerminal(j.status)) return 'skipped';
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
    tick('inputs fetched');
    const engine = await ctx.engine();
    tick('engine loaded');
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
    // Trained and evaluated: store the adapters, then finish (unless a cancel came in meanwhile).
    const meta = normalizeArtifacts(outDir, j.model);
    const tars = await packAdapters(outDir, work, { jobId, modelId: j.model, ...meta });
    const stored: { format: string; blob: Awaited<ReturnType<typeof putBlob>> }[] = [];
    for (const [format, file] of Object.entries(tars)) stored.push({ format, blob: await putBlob(db, file, 'application/x-tar') });
    tick('adapters stored');
    const result = resultOf(report);
    const done = await db.$transaction(async (tx) => {
      const r = await tx.job.updateMany({
        where: { id: jobId, status: 'running' },
        data: {
          status: 'succeeded', finishedAt: now(), step: report.steps, etaSeconds: null, result: result as object, trainedTokens: BigInt(report.tokens),
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
    await events([
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
    const param = err.name === 'DatasetError' ? ((err as { source?: string }).source?.endsWith('validation.jsonl') ? 'validation_file' : 'training_file') : err.name === 'ExitConfigError' ? 'method.edge_llm.exit_layers' : null;
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
  await ctx.queue.add('tune', { jobId }, { jobId: queueJobId, removeOnComplete: 1000, removeOnFail: 5000 });
  return 'requeued';
}
