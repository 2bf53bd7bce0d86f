/** A job's inputs on this worker: its workspace, its training and validation files, and its latest checkpoint. */
import { mkdir } from 'node:fs/promises';
import { makeScratchDir } from '@edgetune/core';
import { join } from 'node:path';
import { blobToFile } from '@edgetune/store';
import { unpackTar } from '../pack.js';
import type { JobRun, StepFailure } from './context.js';

/** Names of the job's files in its workspace (errors.ts tells them apart by these names). */
export const TRAIN_FILE = 'train.jsonl';
export const VALIDATION_FILE = 'validation.jsonl';

/** A job's files in its workspace. */
export interface JobInputs {
  /** the workspace, removed when the run ends */
  work: string;
  /** the engine's output folder; a checkpoint to resume from is in its `checkpoint/` */
  outDir: string;
  trainFile: string;
  validationFile?: string;
  /** the step of the checkpoint the run resumes from (null: it starts afresh) */
  resumeStep: number | null;
}

/**
 * Creates the run's workspace, `<workDir>/<job id>-<host>-<pid>-XXXXXX` (core makeScratchDir: a worker starting
 * later removes it if this process dies without doing so). @returns its path.
 */
export async function openWorkspace(run: JobRun): Promise<string> {
  const { workDir } = run.ctx.config;
  await mkdir(workDir, { recursive: true });
  return makeScratchDir(workDir, run.id);
}

/**
 * Writes the job's training and validation files into `work`, and unpacks its latest checkpoint (then the
 * row's `step` is that checkpoint's).
 * @returns the inputs, or `file_not_found` (param: the file's member) when a file was deleted meanwhile.
 * @throws database and tar errors as they come.
 */
export async function fetchInputs(run: JobRun, work: string): Promise<JobInputs | StepFailure> {
  const { db } = run.ctx;
  const { job } = run;
  const files = [{ id: job.trainingFile, param: 'training_file', path: join(work, TRAIN_FILE) }];
  if (job.validationFile) files.push({ id: job.validationFile, param: 'validation_file', path: join(work, VALIDATION_FILE) });
  for (const f of files) {
    const row = await db.file.findUnique({ where: { id: f.id }, select: { blobId: true } });
    if (!row) return { error: { code: 'file_not_found', message: `File ${f.id} no longer exists`, param: f.param } };
    await blobToFile(db, row.blobId, f.path);
  }
  const outDir = join(work, 'out');
  const ckpt = await db.checkpoint.findFirst({ where: { jobId: run.id }, orderBy: { step: 'desc' } });
  if (ckpt) {
    const tarFile = join(work, 'checkpoint.tar');
    await blobToFile(db, ckpt.blobId, tarFile);
    await unpackTar(tarFile, join(outDir, 'checkpoint'));
    await run.write((tx) => tx.job.update({ where: { id: run.id }, data: { step: ckpt.step } }));
  }
  return { work, outDir, trainFile: files[0].path, validationFile: files[1]?.path, resumeStep: ckpt?.step ?? null };
}
