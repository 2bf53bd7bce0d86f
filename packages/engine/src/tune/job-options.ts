/**
 * A job's resolved configuration (core resolveJobConfig: the service's job vocabulary) -> runTuning options
 * (no I/O, no TF.js: the worker imports this module as `@edgetune/engine/job-options` before it loads the engine).
 */
import { tuneModeOf, type Compression, type Hyperparameters, type Method } from '@edgetune/core';
import type { TuneJobOptions } from './run.js';

/**
 * Engine tuning options for a job: the method's mode (tuneModeOf: edge_llm types -> `edge_llm`, lora types ->
 * `vanilla`, rag -> `none`), and for the edge_llm types its exits, window schedule, heads and prefix.
 */
export function engineTuneOptions(
  method: Method,
  hp: Hyperparameters,
  seed: number,
  totalSteps: number,
): NonNullable<TuneJobOptions['tune']> {
  const el = method.edge_llm;
  return {
    mode: tuneModeOf(method.type),
    ...(el
      ? {
          exitLayers: el.exit_layers,
          schedule: el.schedule,
          trainHeads: el.train_heads,
          headRank: el.head_rank ?? 0, // jobs accepted before head_rank existed
          prefix: el.prefix ?? 'backbone', // ... or before prefix existed
        }
      : {}),
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

/**
 * A job's retrieval (`method.rag`), time budget (seconds -> ms), early stopping and in-loop evaluation
 * (`eval_steps`, resolved by the API) as runTuning options; absent fields (and jobs stored before they
 * existed) leave the engine's defaults: no retrieval, no budget, no in-loop evaluation.
 */
export function engineRunOptions(
  method: Method,
  hp: Hyperparameters,
): Pick<TuneJobOptions, 'rag' | 'timeBudgetMs' | 'earlyStopping' | 'evalEvery'> {
  const es = hp.early_stopping ?? null;
  return {
    ...(method.rag ? { rag: { k: method.rag.k, contextShare: method.rag.context_share } } : {}),
    ...(hp.time_budget_s != null ? { timeBudgetMs: hp.time_budget_s * 1000 } : {}),
    ...(es ? { earlyStopping: { patience: es.patience, minDelta: es.min_delta } } : {}),
    ...(hp.eval_steps != null ? { evalEvery: hp.eval_steps } : {}),
  };
}

/**
 * A job's LUC budget (`method.edge_llm.compression`) as runTuning's compression options: target sparsity,
 * average bits, pruning method, sparsity and bit rules, group size. The policy (stored or profiled) is the caller's.
 */
export function engineCompressionOptions(c: Compression): NonNullable<TuneJobOptions['compression']> {
  return {
    targetSparsity: c.target_sparsity,
    avgBits: c.avg_bits,
    method: c.method,
    sparsityRule: c.sparsity_rule,
    bitsRule: c.bits_rule,
    groupSize: c.group_size,
  };
}
