/**
 * The LUC policy of a compressed job: the stored one of its model's weights (the content fingerprint of
 * this worker's copy) and budget, else the one the engine profiles, stored for the jobs after it. Two jobs
 * racing to store one budget's policy agree on one row (storePolicy, packages/store/src/policies.ts).
 */
import { resolve } from 'node:path';
import type { TuneJobOptions } from '@edgetune/engine';
import { fingerprintStats, modelFingerprint, readModelSummary, type Compression, type JobPlan, type Method } from '@edgetune/core';
import { enginePolicyOf, findPolicy, storePolicy, type PolicyRow } from '@edgetune/store';
import { engineCompressionOptions } from '../engine-options.js';
import type { JobRun, StepFailure } from './context.js';

/** The policy a run compresses with. */
export interface PolicyChoice {
  /** the job's `method.edge_llm.compression` (null: dense model) */
  budget: Compression | null;
  /** the engine's compression options (undefined: dense model) */
  compression: TuneJobOptions['compression'];
  /** the stored policy in use, once known (a fresh one is stored during the run, once profiled) */
  used: { id: string; reused: boolean } | null;
}

type PolicyOrigin = 'reused' | 'created' | 'adopted' | 'resumed';
const POLICY_MESSAGES: Record<PolicyOrigin, string> = {
  reused: 'reused (stored for this model and budget: no profiling)',
  created: 'created from a fresh sensitivity profile and stored',
  adopted: 'stored meanwhile by another job with this model and budget: compressing with it',
  resumed: 'stored by an earlier attempt of this job: compressing with it again',
};

/**
 * Chooses the run's LUC policy: none for a dense job; for a compressed one the stored policy of this
 * worker's weights and the budget when its layer count matches the model's, else a fresh profile's (stored
 * from the engine's `onPolicy`). Also records the weights' fingerprint on the base model when it changed.
 * @returns the choice, or `invalid_model` (param `model`) when the model's weights are incomplete.
 * @throws database and file system errors as they come.
 */
export async function resolvePolicy(run: JobRun, trainFile: string): Promise<PolicyChoice | StepFailure> {
  const { db, workerId } = run.ctx;
  const { job } = run;
  const budget = (job.method as unknown as Method).edge_llm?.compression ?? null;
  const choice: PolicyChoice = { budget, compression: undefined, used: null };
  if (!budget) return choice;
  const layers = readModelSummary(run.modelDir, job.model).numLayers;
  // the weights this worker actually has (a policy profiled on other weights with the same model id is not theirs)
  const fingerprint = await modelFingerprint(run.modelDir);
  if (!fingerprint) {
    return {
      error: {
        code: 'invalid_model',
        message: `Base model ${job.model} on worker ${workerId} has no complete weights (model.safetensors or the shards of model.safetensors.index.json)`,
        param: 'model',
      },
    };
  }
  run.tick(`model fingerprint ${fingerprint.slice(0, 12)} (${fingerprintStats.filesHashed} model files hashed by this process)`);
  // keep base_models current when this folder changed since it was registered (the API plans with it)
  await db.baseModel.updateMany({
    where: { id: job.model, OR: [{ fingerprint: null }, { fingerprint: { not: fingerprint } }] },
    data: { fingerprint },
  });
  const stored = await findPolicy(db, job.model, fingerprint, budget);
  const usable = stored && stored.numLayers === layers ? stored : null;
  if (stored && !usable) run.log(`stored policy ${stored.id} has ${stored.numLayers} layers, the model ${layers}: profiling afresh`);
  const use = (row: PolicyRow, origin: PolicyOrigin) => usePolicy(run, choice, row, origin, fingerprint);
  if (usable) await use(usable, usable.sourceJobId === run.id ? 'resumed' : 'reused');
  choice.compression = {
    ...engineCompressionOptions(budget),
    policy: usable ? enginePolicyOf(usable) : undefined,
    onPolicy: async (policy, sensitivity) => {
      if (usable) return;
      const { row, created } = await storePolicy(db, {
        modelId: job.model,
        fingerprint,
        compression: budget,
        policy,
        sensitivity,
        jobId: run.id,
        calibrationDescription: sensitivity?.calibration.description.replace(resolve(trainFile), `training file ${job.trainingFile}`),
      });
      if (created) return use(row, 'created');
      if (row.numLayers !== policy.sparsity.length) return;
      // Another job stored this budget's policy first: compress with it, so every job of the budget runs the same policy.
      Object.assign(policy, enginePolicyOf(row));
      await use(row, 'adopted');
    },
  };
  return choice;
}

/** Makes `row` the run's policy: on the job's row, in its log and events. */
async function usePolicy(run: JobRun, choice: PolicyChoice, row: PolicyRow, origin: PolicyOrigin, fingerprint: string): Promise<void> {
  choice.used = { id: row.id, reused: origin === 'reused' || origin === 'adopted' };
  await run.write((tx) => tx.job.update({ where: { id: run.id }, data: { policyId: row.id } }));
  run.log(`LUC policy ${row.id} ${POLICY_MESSAGES[origin]}`);
  await run.events([
    {
      message: `Compression policy ${row.id} ${POLICY_MESSAGES[origin]}`,
      data: { policy_id: row.id, policy_reused: choice.used.reused, budget: choice.budget, model_fingerprint: fingerprint },
    },
  ]);
}

/** The plan's `policy` member: the policy the run compressed with (null for a dense job). */
export function planPolicyOf(choice: PolicyChoice): JobPlan['policy'] {
  return choice.budget ? { id: choice.used?.id ?? null, source: 'run' } : null;
}
