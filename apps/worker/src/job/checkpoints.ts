/** Storing a run's checkpoints as blobs, so that any worker can resume the job from its latest one. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { newId } from '@edgetune/core';
import { pruneCheckpoints, putBlob, withDbRetry } from '@edgetune/store';
import { packTar } from '../pack.js';
import { isShutdown } from './cancel.js';
import type { JobRun } from './context.js';
import type { ProgressReporter } from './progress.js';

/** The files of the engine's checkpoint folder that resuming needs. */
const CHECKPOINT_FILES = ['trainer.safetensors', 'trainer_state.json'];

/**
 * Stores the engine's checkpoint of `step` (folder `dir`) as the job's checkpoint of that step, replacing
 * one stored by an earlier attempt. Only every `checkpointEvery`-th step, the last one and a shutdown's are
 * kept; the step metrics before it are flushed first, so that its event follows theirs.
 * @throws database, blob and tar errors as they come.
 */
export async function storeCheckpoint(
  run: JobRun,
  work: string,
  step: number,
  dir: string,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<void> {
  const { db } = run.ctx;
  const { job } = run;
  if (step % job.checkpointEvery !== 0 && step !== job.totalSteps && !isShutdown(signal)) return;
  await progress.flush();
  const tarFile = join(work, `ckpt-${step}.tar`);
  await packTar(dir, CHECKPOINT_FILES, tarFile);
  const blob = await withDbRetry(() => putBlob(db, tarFile, 'application/x-tar'));
  await rm(tarFile, { force: true });
  const last = progress.lastStep;
  const metrics = {
    ...(last ? { train_loss: last.loss, exit_layer: last.exitLayer, window: last.window } : {}),
    // the latest in-loop validation: the checkpoint with the lowest is kept as the best (store pruneCheckpoints)
    ...(progress.lastEval ? { valid_loss: progress.lastEval.loss, valid_step: progress.lastEval.step } : {}),
  };
  // only while this attempt owns the job: a stale one drops its blob and replaces nothing
  await run
    .write(async (tx) => {
      const existing = await tx.checkpoint.findUnique({ where: { jobId_step: { jobId: run.id, step } } });
      if (existing) {
        await tx.checkpoint.update({ where: { id: existing.id }, data: { blobId: blob.id, metrics } });
        await tx.blob.delete({ where: { id: existing.blobId } });
      } else {
        await tx.checkpoint.create({ data: { id: newId('checkpoint'), jobId: run.id, step, metrics, blobId: blob.id } });
      }
      await pruneCheckpoints(tx, run.id, run.ctx.config.checkpointsKept);
    })
    .catch(async (e: Error) => {
      await db.blob.deleteMany({ where: { id: blob.id } }).catch(() => {});
      throw e;
    });
  await run.events([{ message: `Checkpoint saved at step ${step}`, data: { step, bytes: blob.size } }]);
}
