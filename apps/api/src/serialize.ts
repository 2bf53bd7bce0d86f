/** Database rows -> API objects (snake_case, unix seconds, `object` tags). */
import type { Static } from '@fastify/type-provider-typebox';
import type * as S from './schemas.js';
import { limitsOf } from '@edgetune/core';
import type { JobError } from '@edgetune/core';
import { isLive, type WorkerRecord } from '@edgetune/core';

/** Unix seconds of a date (null stays null). */
export function unix(d: Date): number;
export function unix(d: Date | null | undefined): number | null;
export function unix(d: Date | null | undefined): number | null {
  return d ? Math.floor(d.getTime() / 1000) : null;
}

export function fileObject(f: {
  id: string;
  bytes: bigint;
  createdAt: Date;
  filename: string;
  purpose: string;
  records: number;
  blob?: { sha256: string } | null;
  sha256?: string;
}): Static<typeof S.FileObject> {
  return {
    id: f.id,
    object: 'file',
    bytes: Number(f.bytes),
    created_at: unix(f.createdAt),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed',
    status_details: null,
    records: f.records,
    sha256: f.blob?.sha256 ?? f.sha256 ?? '',
  };
}

/** Job row fields the job object needs. */
export interface JobRow {
  id: string;
  projectId: string;
  model: string;
  trainingFile: string;
  validationFile: string | null;
  status: string;
  method: unknown;
  hyperparameters: unknown;
  checkpointEvery: number;
  keepCheckpoints: boolean;
  seed: number;
  suffix: string | null;
  metadata: unknown;
  fineTunedModel: string | null;
  error: unknown;
  step: number;
  totalSteps: number;
  etaSeconds: number | null;
  latestMetrics: unknown;
  result: unknown;
  trainedTokens: bigint | null;
  attempts: number;
  createdAt: Date;
  updatedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  device: unknown;
  plan: unknown;
  policyId: string | null;
}

/** `hyperparameters` as stored; rows older than time budgets and early stopping have none (null). */
function withStopping(hp: unknown): unknown {
  return { time_budget_s: null, early_stopping: null, eval_steps: null, ...(hp as object) };
}

/** `method` as stored; rows older than compression have none (null). */
function withCompression(method: unknown): unknown {
  const m = method as { edge_llm?: Record<string, unknown> };
  if (!m?.edge_llm || 'compression' in m.edge_llm) return method;
  return { ...m, edge_llm: { ...m.edge_llm, compression: null } };
}

export function jobObject(
  j: JobRow,
  extra: { checkpointCount: number; latestCheckpointId: string | null; adapterFormats: string[] },
): Static<typeof S.Job> {
  const running = j.status === 'running' && j.etaSeconds !== null;
  return {
    id: j.id,
    object: 'fine_tuning.job',
    created_at: unix(j.createdAt),
    updated_at: unix(j.updatedAt),
    started_at: unix(j.startedAt),
    finished_at: unix(j.finishedAt),
    estimated_finish: running ? Math.floor(Date.now() / 1000) + (j.etaSeconds ?? 0) : null,
    status: j.status as Static<typeof S.Job>['status'],
    model: j.model,
    fine_tuned_model: j.fineTunedModel,
    training_file: j.trainingFile,
    validation_file: j.validationFile,
    method: withCompression(j.method) as Static<typeof S.Job>['method'],
    hyperparameters: withStopping(j.hyperparameters) as Static<typeof S.Job>['hyperparameters'],
    checkpointing: { every_n_steps: j.checkpointEvery, keep_after_finish: j.keepCheckpoints },
    seed: j.seed,
    suffix: j.suffix,
    metadata: (j.metadata ?? {}) as Record<string, string>,
    progress: {
      step: j.step,
      total_steps: j.totalSteps,
      // a job with no steps (method rag) is done when it succeeds; one stopped early shows where it stopped
      percent: j.totalSteps ? Math.round((1000 * j.step) / j.totalSteps) / 10 : j.status === 'succeeded' ? 100 : 0,
      eta_seconds: j.status === 'running' ? j.etaSeconds : null,
    },
    latest_metrics: (j.latestMetrics ?? null) as Record<string, unknown> | null,
    result: (j.result ?? null) as Static<typeof S.JobResult> | null,
    trained_tokens: j.trainedTokens === null ? null : Number(j.trainedTokens),
    error: (j.error ?? null) as JobError | null,
    attempt: j.attempts,
    checkpoints: { count: extra.checkpointCount, latest_id: extra.latestCheckpointId },
    result_files: extra.adapterFormats,
    device: (j.device ?? null) as Static<typeof S.Job>['device'],
    plan: (j.plan ?? null) as Static<typeof S.JobPlan> | null,
    policy_id: j.policyId,
    project_id: j.projectId,
  };
}

export function eventObject(e: {
  id: string;
  createdAt: Date;
  level: string;
  type: string;
  message: string;
  data: unknown;
}): Static<typeof S.JobEvent> {
  return {
    id: e.id,
    object: 'fine_tuning.job.event',
    created_at: unix(e.createdAt),
    level: e.level,
    type: e.type,
    message: e.message,
    data: (e.data ?? null) as Record<string, unknown> | null,
  };
}

export function checkpointObject(c: {
  id: string;
  jobId: string;
  createdAt: Date;
  step: number;
  metrics: unknown;
  blob: { size: bigint; sha256: string };
}): Static<typeof S.Checkpoint> {
  return {
    id: c.id,
    object: 'fine_tuning.job.checkpoint',
    created_at: unix(c.createdAt),
    fine_tuning_job_id: c.jobId,
    step_number: c.step,
    metrics: (c.metrics ?? {}) as Record<string, unknown>,
    bytes: Number(c.blob.size),
    sha256: c.blob.sha256,
  };
}

export function modelObject(m: {
  id: string;
  createdAt: Date;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  paramCount: bigint;
  storedDtype: string | null;
  weightBytes: bigint | null;
  config: unknown;
  hosts: string[];
  fingerprint: string | null;
}): Static<typeof S.ModelObject> {
  const type = (m.config as { model_type?: unknown } | null)?.model_type;
  return {
    id: m.id,
    object: 'model',
    created: unix(m.createdAt),
    owned_by: 'edgetune',
    // registered configs passed parseLlamaConfig, which reads a missing model_type as llama
    family: type === 'mistral' || type === 'qwen2' ? type : 'llama',
    n_params: Number(m.paramCount),
    stored_dtype: m.storedDtype,
    weight_bytes: m.weightBytes === null ? null : Number(m.weightBytes),
    hidden_size: m.hiddenSize,
    vocab_size: m.vocabSize,
    limits: limitsOf(m),
    hosts: m.hosts,
    fingerprint: m.fingerprint,
  };
}

/** A `workers` row as the API shows it; `online` per {@link isLive}. */
export function workerObject(w: WorkerRecord, heartbeatMs: number, now = Date.now()): Static<typeof S.WorkerObject> {
  return {
    id: w.id,
    object: 'worker',
    host: w.host,
    online: isLive(w, heartbeatMs, now),
    concurrency: w.concurrency,
    device: {
      memory_budget_bytes: w.memoryBudgetBytes,
      total_memory_bytes: w.totalMemoryBytes,
      threads: w.threads,
      backend: w.backend,
      matmul: w.matmul,
      matmul_gflops: Math.round(w.matmulGflops * 100) / 100,
      step_time_factor: w.stepTimeFactor === null ? null : Math.round(w.stepTimeFactor * 1000) / 1000,
      tensor_heap_ceiling_bytes: w.tensorHeapCeilingBytes,
    },
    started_at: unix(w.startedAt),
    heartbeat_at: unix(w.heartbeatAt),
  };
}

export function projectObject(p: { id: string; name: string; createdAt: Date }): Static<typeof S.Project> {
  return { id: p.id, object: 'project', name: p.name, created_at: unix(p.createdAt) };
}

export function apiKeyObject(
  k: {
    id: string;
    projectId: string;
    name: string;
    prefix: string;
    admin: boolean;
    createdAt: Date;
    lastUsedAt: Date | null;
    revokedAt: Date | null;
  },
  secret?: string,
): Static<typeof S.ApiKey> {
  return {
    id: k.id,
    object: 'api_key',
    project_id: k.projectId,
    name: k.name,
    prefix: k.prefix,
    admin: k.admin,
    created_at: unix(k.createdAt),
    last_used_at: unix(k.lastUsedAt),
    revoked_at: unix(k.revokedAt),
    ...(secret ? { secret } : {}),
  };
}

/** `{object: "list", data, has_more, first_id, last_id}` from `limit + 1` fetched rows. */
export function listPage<T extends { id: string }>(
  items: T[],
  limit: number,
): { object: 'list'; data: T[]; has_more: boolean; first_id: string | null; last_id: string | null } {
  const data = items.slice(0, limit);
  return {
    object: 'list',
    data,
    has_more: items.length > limit,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
  };
}
