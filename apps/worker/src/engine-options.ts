/** A job's resolved configuration -> the engine's runTuning options (no I/O). */
import type { TuneJobOptions } from '@edgetune/engine';
import type { Hyperparameters, Method } from '@edgetune/core';

/** Engine tuning options for a job. */
export function engineTuneOptions(
  method: Method,
  hp: Hyperparameters,
  seed: number,
  totalSteps: number,
): NonNullable<TuneJobOptions['tune']> {
  return {
    mode: 'edge_llm',
    exitLayers: method.edge_llm.exit_layers,
    schedule: method.edge_llm.schedule,
    trainHeads: method.edge_llm.train_heads,
    headRank: method.edge_llm.head_rank ?? 0, // jobs accepted before head_rank existed
    prefix: method.edge_llm.prefix ?? 'backbone', // ... or before prefix existed
    steps: totalSteps,
    microBatch: hp.batch_size,
    gradAccum: hp.gradient_accumulation_steps,
    lr: hp.learning_rate,
    warmupSteps: hp.warmup_steps,
    lrSchedule: hp.lr_scheduler,
    weightDecay: hp.weight_decay,
    maxGradNorm: hp.max_grad_norm,
    seed,
    lora: { r: hp.lora_r, alpha: hp.lora_alpha, dropout: hp.lora_dropout, targetModules: hp.target_modules as never },
  };
}
