/** Running the engine on a job: its backend threads, its device for the planner, and the run's callbacks. */
import { availableParallelism } from 'node:os';
import type { TuneJobOptions, TuneJobReport } from '@edgetune/engine';
import { tensorHeapCeilingOf, type Hyperparameters, type JobDevice, type Method } from '@edgetune/core';
import { defaultMemoryBudget } from '../device.js';
import { engineRunOptions, engineTuneOptions } from '../engine-options.js';
import { isShutdown } from './cancel.js';
import { storeCheckpoint } from './checkpoints.js';
import type { JobRun } from './context.js';
import type { JobInputs } from './inputs.js';
import type { PolicyChoice } from './policy.js';
import type { ProgressReporter } from './progress.js';

type Engine = typeof import('@edgetune/engine');

function jobDevice(run: JobRun): JobDevice | null {
  return (run.job.device ?? null) as JobDevice | null;
}

/** The engine, its BLAS threads set to the job's `device.threads`, else EDGETUNE_DEVICE_THREADS (at most this host's cores). */
export async function loadEngine(run: JobRun): Promise<Engine> {
  const want = jobDevice(run)?.threads ?? run.ctx.config.deviceThreads ?? undefined;
  return run.ctx.engine(want ? Math.min(want, availableParallelism()) : undefined);
}

/**
 * The device the planner fits the run to: the job's memory budget, else this worker's
 * (EDGETUNE_DEVICE_MEMORY_BYTES or its free memory now); this process's base RSS; EDGETUNE_DEVICE_GFLOPS;
 * the heap ceiling of the backend `engine` runs on (wasm: 4294901760 bytes, whatever the budget).
 */
function deviceOptions(run: JobRun, engine: Engine): NonNullable<TuneJobOptions['device']> {
  const { config } = run.ctx;
  const baseRss = run.ctx.baseRssBytes?.();
  const backend = engine.backendInfo()?.backend;
  const ceiling = backend ? tensorHeapCeilingOf(backend) : undefined;
  return {
    memoryBudgetBytes: jobDevice(run)?.memory_budget_bytes ?? defaultMemoryBudget(config),
    ...(baseRss ? { baseRssBytes: baseRss } : {}),
    ...(config.deviceGflops ? { matmulGflops: config.deviceGflops } : {}),
    ...(ceiling !== undefined ? { tensorHeapCeilingBytes: ceiling } : {}),
  };
}

/**
 * Tunes the job with `engine` (engine runTuning): step metrics and in-loop validation points go to `progress`, checkpoints to the
 * database; `signal` stops it between steps, and a shutdown checkpoints the step in progress first.
 * @returns the engine's report (adapters and metrics in `inputs.outDir`).
 * @throws the engine's errors (errors.ts maps them to the job's error), an AbortError-named Error once aborted.
 */
export async function tune(
  run: JobRun,
  engine: Engine,
  inputs: JobInputs,
  policy: PolicyChoice,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<TuneJobReport> {
  const { job } = run;
  const method = job.method as unknown as Method;
  const hp = job.hyperparameters as unknown as Hyperparameters;
  return engine.runTuning({
    modelDir: run.modelDir,
    trainFile: inputs.trainFile,
    validationFile: inputs.validationFile,
    outDir: inputs.outDir,
    maxLength: hp.max_length,
    tune: engineTuneOptions(method, hp, job.seed, job.totalSteps),
    ...engineRunOptions(method, hp),
    compression: policy.compression,
    device: deviceOptions(run, engine),
    checkpointEvery: job.checkpointEvery,
    // On shutdown the step in progress is checkpointed before the abort takes effect at the top of
    // the engine's loop (tests/worker/jobs.test.ts "SIGTERM").
    shouldCheckpoint: () => isShutdown(signal),
    resume: inputs.resumeStep !== null,
    signal,
    log: run.log,
    onStep: (r) => progress.onStep(r),
    onEval: (p) => progress.onEval(p),
    onCheckpoint: (step, dir) => storeCheckpoint(run, inputs.work, step, dir, progress, signal),
  });
}
