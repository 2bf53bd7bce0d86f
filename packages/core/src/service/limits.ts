/**
 * The service's resource limits on a job, checked against its plan before it is queued: forecast training
 * time (EDGETUNE_MAX_JOB_SECONDS) and forecast checkpoint storage (EDGETUNE_MAX_CHECKPOINT_BYTES, with the
 * checkpoints a job keeps, EDGETUNE_CHECKPOINTS_KEPT). Memory is the plan's own verdict (`fits`).
 */
import { costFeatures, type PlanInput } from '../schedule/planner.js';
import type { Config } from './config.js';
import type { ResolvedJobConfig } from './jobconfig.js';
import { planInputOf, type JobPlan } from './plan.js';

/** Bytes of one float32 value: checkpoints store every tensor as float32. */
const F32 = 4;

/**
 * Bytes of one of the job's checkpoints as the engine writes it: every trainable parameter (LoRA, exit norms
 * and heads) with its two AdamW moments, plus the best-on-validation copy of them when the job validates in
 * the loop (`eval_steps`). Small state (counters, data cursor, handed-on window outputs) is not counted.
 */
export function checkpointBytesOf(
  model: PlanInput['model'],
  cfg: Pick<ResolvedJobConfig, 'method' | 'hyperparameters' | 'totalSteps'>,
  trainRecords: number,
  plan: Pick<JobPlan, 'exit_layers' | 'micro_batch' | 'prefix_cache'>,
  storedDtype: string | null = null,
): number {
  const x = costFeatures(planInputOf(model, cfg, trainRecords, null, storedDtype), plan.exit_layers, plan.micro_batch, plan.prefix_cache);
  const copies = 3 + (cfg.hyperparameters.eval_steps != null ? 1 : 0);
  return Math.round(x.trainableParams * copies * F32);
}

/**
 * Checkpoints of a job held at once: the latest `kept` (and the best on validation besides, when it validates
 * in the loop), at most as many as the run writes (every `checkpointEvery` steps and the last).
 */
export function checkpointsHeld(cfg: Pick<ResolvedJobConfig, 'hyperparameters' | 'totalSteps' | 'checkpointEvery'>, kept: number): number {
  if (cfg.totalSteps <= 0) return 0;
  const written = Math.ceil(cfg.totalSteps / cfg.checkpointEvery);
  return Math.min(written, kept + (cfg.hyperparameters.eval_steps != null ? 1 : 0));
}

/** One limit a job exceeds: what, how much it needs and the limit, in `unit`. */
export interface LimitExceeded {
  /** `time`: forecast training time; `checkpoint_storage`: forecast checkpoint bytes held at once */
  limit: 'time' | 'checkpoint_storage';
  /** the configuration variable that sets it */
  variable: string;
  needs: number;
  allowed: number;
  unit: 'seconds' | 'bytes';
}

/**
 * The limits of `config` that a job planned as `plan` exceeds (empty: none); a limit of 0 is no limit.
 * `checkpointBytes`: one checkpoint's size ({@link checkpointBytesOf}).
 */
export function exceededLimits(
  plan: Pick<JobPlan, 'forecast'>,
  cfg: Pick<ResolvedJobConfig, 'hyperparameters' | 'totalSteps' | 'checkpointEvery'>,
  checkpointBytes: number,
  config: Pick<Config, 'maxJobSeconds' | 'maxCheckpointBytes' | 'checkpointsKept'>,
): LimitExceeded[] {
  const out: LimitExceeded[] = [];
  const seconds = Math.ceil(plan.forecast.total_ms / 1000);
  if (config.maxJobSeconds > 0 && seconds > config.maxJobSeconds)
    out.push({ limit: 'time', variable: 'EDGETUNE_MAX_JOB_SECONDS', needs: seconds, allowed: config.maxJobSeconds, unit: 'seconds' });
  const bytes = checkpointBytes * checkpointsHeld(cfg, config.checkpointsKept);
  if (config.maxCheckpointBytes > 0 && bytes > config.maxCheckpointBytes)
    out.push({
      limit: 'checkpoint_storage',
      variable: 'EDGETUNE_MAX_CHECKPOINT_BYTES',
      needs: bytes,
      allowed: config.maxCheckpointBytes,
      unit: 'bytes',
    });
  return out;
}
