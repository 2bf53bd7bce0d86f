/**
 * LUC policies as database entities: one per (base model, model fingerprint, budget), where the
 * fingerprint is the sha256 of the model's config and weights (fingerprint.ts) and the budget is the
 * resolved `method.edge_llm.compression` (target sparsity, average bits, pruning method, rules, group
 * size). The first job with a model's weights and a budget profiles the model and stores its policy; every
 * later one with the same weights reuses it, and a model id whose weights changed gets a new policy.
 * Two jobs racing to store the same policy agree on one row: the insert skips duplicates of the unique
 * budget key and both read back the row that won.
 */
import type { Prisma, PrismaClient } from './db.js';
import { newId, type Compression, type LucPolicy, type SensitivityReport } from '@edgetune/core';

/** A stored policy row. */
export type PolicyRow = Prisma.PolicyGetPayload<object>;

/** The unique key of the policy of a model's weights (`fingerprint`) for a budget. */
export function budgetKey(modelId: string, fingerprint: string, c: Compression) {
  return {
    baseModelId: modelId,
    modelFingerprint: fingerprint,
    targetSparsity: c.target_sparsity,
    avgBits: c.avg_bits,
    method: c.method,
    sparsityRule: c.sparsity_rule,
    bitsRule: c.bits_rule,
    groupSize: c.group_size,
  };
}

/**
 * The stored policy of a model's weights for a budget, or null. A missing fingerprint (a model whose
 * weights no host reported) matches nothing, nor do policies stored before fingerprints existed.
 */
export async function findPolicy(db: PrismaClient, modelId: string, fingerprint: string | null, c: Compression): Promise<PolicyRow | null> {
  if (!fingerprint) return null;
  return db.policy.findUnique({ where: { budget: budgetKey(modelId, fingerprint, c) } });
}

/** JSON cannot hold NaN or Infinity: such values become null. */
const num = (x: number): number | null => (Number.isFinite(x) ? x : null);
const nums = (a: number[]): (number | null)[] => a.map(num);

/** The engine's sensitivity report in the stored (snake_case) form. */
export function sensitivityJson(s: SensitivityReport): Record<string, unknown> {
  return {
    method: s.method,
    sparsities: s.sparsities,
    bits: s.bits,
    group_size: s.groupSize,
    dense_loss: num(s.denseLoss),
    profile_ms: Math.round(s.ms),
    layers: s.layers.map((l) => ({
      layer: l.layer,
      prune_nmse: nums(l.pruneNmse),
      prune_dloss: nums(l.pruneDloss),
      quant_nmse: nums(l.quantNmse),
      quant_dloss: nums(l.quantDloss),
    })),
  };
}

/**
 * Stores a freshly profiled policy unless the model's weights (`fingerprint`) and budget already have one
 * (a concurrent job's); returns the row that holds the key and whether this call created it.
 * @param fingerprint the content fingerprint of the model folder the policy was profiled on (modelFingerprint)
 * @param calibrationDescription where the calibration sequences came from (no worker-local paths)
 */
export async function storePolicy(
  db: PrismaClient,
  a: {
    modelId: string;
    fingerprint: string;
    compression: Compression;
    policy: LucPolicy;
    sensitivity: SensitivityReport | null;
    calibrationDescription?: string;
    jobId: string | null;
  },
): Promise<{ row: PolicyRow; created: boolean }> {
  if (!a.fingerprint) throw new Error(`policy for ${a.modelId}: the model has no fingerprint`);
  const id = newId('policy');
  const s = a.sensitivity;
  const data = {
    id,
    ...budgetKey(a.modelId, a.fingerprint, a.compression),
    numLayers: a.policy.sparsity.length,
    sparsity: a.policy.sparsity,
    bits: a.policy.bits.map((b) => Math.round(b)),
    pruneSensitivity: a.policy.pruneSensitivity,
    quantSensitivity: a.policy.quantSensitivity,
    sensitivity: s ? (sensitivityJson(s) as object) : undefined,
    calibration: s
      ? {
          description: a.calibrationDescription ?? s.calibration.description,
          sequences: s.calibration.sequences,
          seq_len: s.calibration.seqLen,
          tokens: s.calibration.tokens,
        }
      : undefined,
    sourceJobId: a.jobId,
  };
  // INSERT ... ON CONFLICT DO NOTHING: the loser of a race inserts nothing and reads the winner's row.
  const inserted = await db.policy.createMany({ data: [data], skipDuplicates: true });
  const row = await findPolicy(db, a.modelId, a.fingerprint, a.compression);
  if (!row) throw new Error(`policy for ${a.modelId} (${a.fingerprint}) ${JSON.stringify(a.compression)} vanished after insert`);
  return { row, created: inserted.count === 1 };
}

/** A stored policy in the engine's form (to pass as `compression.policy`). */
export function enginePolicyOf(row: PolicyRow): LucPolicy {
  return {
    sparsity: row.sparsity,
    bits: row.bits,
    targetSparsity: row.targetSparsity,
    avgBits: row.avgBits,
    sparsityRule: row.sparsityRule as LucPolicy['sparsityRule'],
    bitsRule: row.bitsRule as LucPolicy['bitsRule'],
    pruneSensitivity: row.pruneSensitivity,
    quantSensitivity: row.quantSensitivity,
  };
}

/** The budget of a stored policy, as jobs state it. */
export function budgetOf(row: PolicyRow): Compression {
  return {
    target_sparsity: row.targetSparsity,
    avg_bits: row.avgBits,
    method: row.method as Compression['method'],
    sparsity_rule: row.sparsityRule as Compression['sparsity_rule'],
    bits_rule: row.bitsRule as Compression['bits_rule'],
    group_size: row.groupSize,
  };
}

/** What a policy shows of the data it was profiled on when the viewer may not see the job that profiled it. */
export const CALIBRATION_ELSEWHERE = 'the training file of the job that profiled this policy (not shown: it is not one of yours)';

/**
 * The API's policy object (also written into job bundles as `policy.json`). Policies are shared by every project,
 * the job that profiled one is not: unless `o.showSource` (the viewer's project ran that job), the calibration
 * description, which names that job's training file, is replaced by {@link CALIBRATION_ELSEWHERE}.
 */
export function policyObject(row: PolicyRow, o: { jobCount?: number; showSource?: boolean } = {}) {
  const { jobCount } = o;
  const calibration = (row.calibration ?? null) as { description: string; sequences: number; seq_len: number; tokens: number } | null;
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  return {
    id: row.id,
    object: 'policy' as const,
    created_at: Math.floor(row.createdAt.getTime() / 1000),
    model: row.baseModelId,
    model_fingerprint: row.modelFingerprint || null,
    budget: budgetOf(row),
    n_layers: row.numLayers,
    sparsity: row.sparsity,
    bits: row.bits,
    mean_sparsity: Math.round(mean(row.sparsity) * 1e6) / 1e6,
    mean_bits: Math.round(mean(row.bits) * 1e6) / 1e6,
    sensitivity: {
      prune: nums(row.pruneSensitivity),
      quant: nums(row.quantSensitivity),
      profile: (row.sensitivity ?? null) as Record<string, unknown> | null,
    },
    calibration: calibration && !o.showSource ? { ...calibration, description: CALIBRATION_ELSEWHERE } : calibration,
    ...(jobCount !== undefined ? { job_count: jobCount } : {}),
  };
}
