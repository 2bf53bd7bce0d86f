/** The job's `error` for an error the engine threw: one table from the error's name to its code and param. */
import type { JobError } from '@edgetune/core';
import { VALIDATION_FILE } from './inputs.js';

/** A job error's `code`, and its `param`: the request member at fault (a fixed one, or read off the error). */
interface ErrorEntry {
  code: string;
  param: string | null | ((err: Error) => string | null);
}

/**
 * Engine errors that are the user's doing (bad data, model, configuration), by `Error.name`. Any other
 * error is `internal_error` with param null.
 */
export const USER_ERRORS: Readonly<Record<string, ErrorEntry>> = {
  // `source` is the file the bad line is in: the job's copies are named after their member (inputs.ts)
  DatasetError: {
    code: 'invalid_dataset',
    param: (err) => ((err as { source?: string }).source?.endsWith(VALIDATION_FILE) ? 'validation_file' : 'training_file'),
  },
  ModelConfigError: { code: 'invalid_model', param: null },
  AdapterError: { code: 'invalid_adapter', param: null },
  ExitConfigError: { code: 'invalid_exit_layers', param: 'method.edge_llm.exit_layers' },
  EvaluationError: { code: 'evaluation_failed', param: null },
  PlanNotFeasibleError: { code: 'plan_does_not_fit', param: 'device.memory_budget_bytes' },
  PolicyError: { code: 'invalid_compression', param: 'method.edge_llm.compression' },
  RagOptionsError: { code: 'invalid_method', param: 'method.rag' },
  // the hyperparameters (learning rate, lora_alpha) made the loss, gradients or weights non-finite
  TrainingDivergedError: { code: 'training_diverged', param: 'hyperparameters' },
};

/** Whether `err` is the user's doing (a {@link USER_ERRORS} name), not the service's. */
export function isUserError(err: Error): boolean {
  return Object.hasOwn(USER_ERRORS, err.name);
}

/** The job's `error` for `err` (message: `err.message`). */
export function jobErrorOf(err: Error): JobError {
  const entry = isUserError(err) ? USER_ERRORS[err.name] : { code: 'internal_error', param: null };
  const param = typeof entry.param === 'function' ? entry.param(err) : entry.param;
  return { code: entry.code, message: err.message, param };
}
