/**
 * Jobs on the API side: planning (dry runs), creation (validate, resolve, plan, enqueue), lookup, listing,
 * cancel, checkpoints and adapters. The routes hand their queries here.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  channels,
  checkpointBytesOf,
  exceededLimits,
  hostFingerprint,
  isEdgeLlmMethod,
  isTerminal,
  newId,
  parseLlamaConfig,
  planJob,
  resolveJobConfig,
  formatDuration,
  JobConfigError,
  type Config,
  type ControlMessage,
  type JobPlan,
  type JobStatus,
  type QueueJobData,
  type ResolvedJobConfig,
} from '@edgetune/core';
import {
  addEvents,
  dropFinishedCheckpoints,
  enqueueJob,
  findPolicy,
  freeBlobs,
  planningWorker,
  queryRows,
  type PrismaClient,
} from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import { checkpointObject, jobObject, listPage, type JobRow } from '../serialize.js';
import type { JobCreateBody, JobDryRunObject, JobObject } from '../schemas.js';

/** Adapter download formats. */
export const ADAPTER_FORMATS = ['peft', 'bundle'] as const;

/** What the job service needs. */
export interface JobDeps {
  db: PrismaClient;
  redis: Redis;
  queue: Queue<QueueJobData>;
  /**
   * the queue prefix (its Redis channels); device defaults of the plan when no worker is live (EDGETUNE_DEVICE_*);
   * the heartbeat that tells live workers; the models folder (a local model's fingerprint keys its stored policies)
   */
  config: Pick<
    Config,
    | 'queuePrefix'
    | 'deviceMemoryBytes'
    | 'deviceThreads'
    | 'deviceGflops'
    | 'modelsDir'
    | 'workerHeartbeatMs'
    | 'maxJobSeconds'
    | 'maxCheckpointBytes'
    | 'checkpointsKept'
  >;
}

/** The job object of a row (counts checkpoints and adapters: one query). */
export async function renderJob(db: PrismaClient, j: JobRow): Promise<JobObject> {
  return jobObject(j, (await jobExtras(db, [j.id])).get(j.id) ?? NO_EXTRAS);
}

/** What the job object adds to a row. */
type JobExtras = Parameters<typeof jobObject>[1];
const NO_EXTRAS: JobExtras = { checkpointCount: 0, latestCheckpointId: null, adapterFormats: [] };

/** What the job object adds to a row, as columns of a `jobs j` query: checkpoint count, latest checkpoint, adapter formats. */
const JOB_EXTRAS = `(SELECT count(*) FROM checkpoints c WHERE c.job_id = j.id)::int AS x_checkpoint_count,
  (SELECT c.id FROM checkpoints c WHERE c.job_id = j.id ORDER BY c.step DESC LIMIT 1) AS x_latest_checkpoint_id,
  ARRAY(SELECT a.format FROM adapters a WHERE a.job_id = j.id ORDER BY a.format) AS x_adapter_formats`;

/** A row of `SELECT ..., JOB_EXTRAS`. */
interface ExtrasRow {
  id: string;
  xCheckpointCount: number;
  xLatestCheckpointId: string | null;
  xAdapterFormats: string[];
}

/** The extras of a row of `SELECT ..., JOB_EXTRAS`. */
function extrasOf(r: ExtrasRow): JobExtras {
  return { checkpointCount: r.xCheckpointCount, latestCheckpointId: r.xLatestCheckpointId, adapterFormats: r.xAdapterFormats };
}

/** The extras of the jobs `ids`, by id, in one query. */
async function jobExtras(db: PrismaClient, ids: string[]): Promise<Map<string, JobExtras>> {
  if (!ids.length) return new Map();
  const rows = await queryRows<ExtrasRow>(db, `SELECT j.id, ${JOB_EXTRAS} FROM jobs j WHERE j.id = ANY($1::text[])`, [ids]);
  return new Map(rows.map((r) => [r.id, extrasOf(r)]));
}

/** The fields of a job row the job object reads: a field JobRow gains and this lacks fails to compile. */
const JOB_FIELDS: Record<keyof JobRow, true> = {
  id: true,
  projectId: true,
  model: true,
  trainingFile: true,
  validationFile: true,
  status: true,
  method: true,
  hyperparameters: true,
  checkpointEvery: true,
  keepCheckpoints: true,
  seed: true,
  suffix: true,
  metadata: true,
  fineTunedModel: true,
  error: true,
  step: true,
  totalSteps: true,
  etaSeconds: true,
  latestMetrics: true,
  result: true,
  trainedTokens: true,
  attempts: true,
  createdAt: true,
  updatedAt: true,
  startedAt: true,
  finishedAt: true,
  device: true,
  plan: true,
  policyId: true,
};

/** `GET /v1/jobs/{id}`'s statement: named columns (every `jobs` column is its field's name in snake case), so it can be prepared. */
const GET_JOB_SQL = `SELECT ${Object.keys(JOB_FIELDS)
  .map((f) => `j.${f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`)
  .join(', ')}, ${JOB_EXTRAS} FROM jobs j WHERE j.id = $1 AND j.project_id = $2`;

/**
 * The job object of a job of the project in one query, straight from the pg pool and prepared once per
 * connection (what `GET /v1/jobs/{id}` answers: the hottest read).
 * @throws ApiError 404 `job_not_found`
 */
export async function getJob(db: PrismaClient, projectId: string, id: string): Promise<JobObject> {
  const [row] = await queryRows<JobRow & ExtrasRow>(db, GET_JOB_SQL, [id, projectId], 'edgetune_get_job');
  if (!row) throw notFound('job', id);
  return jobObject(row, extrasOf(row));
}

/** A job of the project or 404. */
export async function findJob(db: PrismaClient, projectId: string, id: string) {
  const j = await db.job.findFirst({ where: { id, projectId } });
  if (!j) throw notFound('job', id);
  return j;
}

/**
 * A file of the project that a job may train or validate on; `param` names the request field in errors.
 * @throws ApiError 400 `file_not_found`, 400 `invalid_file_purpose` (not "fine-tune")
 */
export async function fineTuneFile(db: PrismaClient, projectId: string, id: string, param: string) {
  const f = await db.file.findFirst({ where: { id, projectId } });
  if (!f) throw new ApiError(400, 'file_not_found', `No file with id ${JSON.stringify(id)}`, { param });
  if (f.purpose !== 'fine-tune')
    throw new ApiError(400, 'invalid_file_purpose', `File ${id} has purpose "${f.purpose}", not "fine-tune"`, { param });
  return f;
}

/** A create request checked and resolved: its model, files, configuration and plan. */
interface PreparedJob {
  model: { id: string };
  train: { id: string; records: number };
  val: { id: string; records: number } | null;
  cfg: ResolvedJobConfig;
  plan: JobPlan;
  /** the stored policy the job would reuse */
  policyId: string | null;
  /** bytes of one of its checkpoints (checkpointBytesOf) */
  checkpointBytes: number;
}

/** Checks the model and files, resolves the configuration, and plans the job (nothing is written). */
async function prepareJob(deps: JobDeps, projectId: string, body: JobCreateBody): Promise<PreparedJob> {
  const { db } = deps;
  const model = await db.baseModel.findUnique({ where: { id: body.model } });
  if (!model)
    throw new ApiError(400, 'model_not_found', `Base model ${JSON.stringify(body.model)} is not installed; see GET /v1/models`, {
      param: 'model',
    });
  const fileOf = (id: string, param: string) => fineTuneFile(db, projectId, id, param);
  const train = await fileOf(body.training_file, 'training_file');
  const val = body.validation_file ? await fileOf(body.validation_file, 'validation_file') : null;
  let cfg: ResolvedJobConfig;
  try {
    cfg = resolveJobConfig(body, model, train.records, val?.records ?? null);
  } catch (e) {
    if (e instanceof JobConfigError)
      throw new ApiError(400, e.code, e.message, { param: e.param, errors: [{ param: e.param, message: e.message }] });
    throw e;
  }
  let shape: ReturnType<typeof parseLlamaConfig>;
  try {
    shape = parseLlamaConfig(model.config as Record<string, unknown>);
  } catch (e) {
    throw new ApiError(400, 'invalid_model', `Base model ${model.id} cannot be planned: ${(e as Error).message}`, { param: 'model' });
  }
  const c = cfg.method.edge_llm?.compression ?? null;
  // the policy of this budget for the weights the API knows: its own copy's, else those the workers reported
  const stored = c ? await findPolicy(db, model.id, await hostFingerprint(deps.config.modelsDir, model.id, model.fingerprint), c) : null;
  let plan: JobPlan;
  try {
    // planned for the device of a live worker that has the model: the one that will run it
    // with the weights' stored dtype (16-bit weights stay outside the TF.js heap) and the worker's heap ceiling
    const worker = await planningWorker(db, deps.config.workerHeartbeatMs, model.hosts);
    plan = planJob(shape, cfg, train.records, deps.config, stored, worker, model.storedDtype);
  } catch (e) {
    if ((e as Error).name === 'PlanError')
      throw new ApiError(400, 'invalid_request', `The job cannot be planned: ${(e as Error).message}`, { param: null });
    throw e;
  }
  const checkpointBytes = checkpointBytesOf(shape, cfg, train.records, plan, model.storedDtype);
  return { model, train, val, cfg, plan, policyId: stored?.id ?? null, checkpointBytes };
}

/** `POST /v1/jobs?dry_run=true`: the resolved job and its plan; creates nothing. */
export async function dryRunJob(deps: JobDeps, projectId: string, body: JobCreateBody): Promise<JobDryRunObject> {
  const p = await prepareJob(deps, projectId, body);
  return {
    object: 'job.plan',
    model: p.model.id,
    training_file: p.train.id,
    validation_file: p.val?.id ?? null,
    training_records: p.train.records,
    total_steps: p.cfg.totalSteps,
    method: p.cfg.method,
    hyperparameters: p.cfg.hyperparameters as unknown as Record<string, unknown>,
    device: p.cfg.device,
    policy_id: p.policyId,
    plan: p.plan,
  };
}

/**
 * Creates a job: checks the model and files, resolves the configuration, plans it and refuses it (422
 * `plan_does_not_fit`, the plan in the problem) when it cannot fit its memory budget; otherwise records
 * the job in `validating_files`, then (files were validated at upload) moves it to `queued` and enqueues it.
 * The job is accepted (answered 201) only once it is `queued`: a row left in `validating_files` by an API
 * that died is failed with `api_interrupted` by the workers' reconciler, and a row that reconciler failed
 * while this request was still slowly under way answers 503 `api_interrupted`.
 *
 * With `idempotencyKey` (the request's Idempotency-Key, held by this request) the job records the key, and a
 * retry that took over the key of a request whose API died finds that request's job instead of creating a
 * second one: it finishes accepting a job left in `validating_files`, answers one already accepted as it is
 * now, and creates a new one only when the first failed before it was accepted.
 */
export async function createJob(
  deps: JobDeps,
  projectId: string,
  body: JobCreateBody,
  idempotencyKey: string | null = null,
): Promise<JobObject> {
  const { db } = deps;
  const prior = idempotencyKey ? await priorJob(deps, projectId, idempotencyKey) : null;
  if (prior) return prior;
  const { model, train, val, cfg, plan, checkpointBytes } = await prepareJob(deps, projectId, body);
  if (!plan.fits) {
    const param = cfg.device?.memory_budget_bytes != null ? 'device.memory_budget_bytes' : 'device';
    throw new ApiError(
      422,
      'plan_does_not_fit',
      `The job does not fit its device: it ${plan.reason}. Lower hyperparameters.batch_size or max_length, ` +
        `${isEdgeLlmMethod(cfg.method.type) ? 'compress the model (method.edge_llm.compression), ' : ''}store its weights in BF16, or raise device.memory_budget_bytes ` +
        "(a backend's heap ceiling cannot be raised). The forecast is in `plan`.",
      { param, extra: { plan } },
    );
  }
  refuseOverLimits(deps, cfg, plan, checkpointBytes);
  const id = newId('job');
  try {
    await db.job.create({
      data: {
        id,
        projectId,
        model: model.id,
        trainingFile: train.id,
        validationFile: val?.id ?? null,
        status: 'validating_files',
        method: cfg.method as object,
        hyperparameters: cfg.hyperparameters as object,
        checkpointEvery: cfg.checkpointEvery,
        keepCheckpoints: body.checkpointing?.keep_after_finish ?? false,
        seed: cfg.seed,
        suffix: body.suffix ?? null,
        metadata: (body.metadata ?? {}) as object,
        totalSteps: cfg.totalSteps,
        queueJobId: id,
        device: (cfg.device ?? undefined) as object | undefined,
        plan: plan as object,
        idempotencyKey,
      },
    });
  } catch (e) {
    // the request this one took the key from was slow, not dead, and created its job meanwhile
    if ((e as { code?: string }).code === 'P2002' && idempotencyKey) {
      const late = await priorJob(deps, projectId, idempotencyKey);
      if (late) return late;
    }
    throw e;
  }
  await addEvents(db, deps.redis, deps.config.queuePrefix, id, [
    { type: 'status', message: 'Job created; validating files', data: { status: 'validating_files' } },
    {
      message: `Files validated: ${train.records} training records${val ? `, ${val.records} validation records` : ''}`,
      data: { training_records: train.records, validation_records: val?.records ?? 0 },
    },
  ]);
  return acceptJob(deps, projectId, id);
}

/** `bytes` in GiB or MiB, as a person reads it. */
function byteText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/**
 * Refuses a job whose plan exceeds the service's limits (exceededLimits: forecast training time, checkpoint
 * storage held at once).
 * @throws ApiError 422 `job_exceeds_limits`, each limit with what the job needs and what is allowed (also in `limits`)
 */
function refuseOverLimits(deps: JobDeps, cfg: ResolvedJobConfig, plan: JobPlan, checkpointBytes: number): void {
  const over = exceededLimits(plan, cfg, checkpointBytes, deps.config);
  if (!over.length) return;
  const clauses = over.map((o) =>
    o.limit === 'time'
      ? `its forecast training time is ${formatDuration(o.needs * 1000)} (${o.needs} s), over the limit of ${o.allowed} s (${o.variable}); ` +
        'lower hyperparameters.n_epochs, max_steps, batch_size or gradient_accumulation_steps, or set hyperparameters.time_budget_s'
      : `its checkpoints would hold ${byteText(o.needs)} (${o.needs} bytes: ${byteText(checkpointBytes)} each), over the limit of ${o.allowed} bytes (${o.variable}); ` +
        'lower method.edge_llm.head_rank or hyperparameters.lora_r, or use fewer exits',
  );
  throw new ApiError(422, 'job_exceeds_limits', `The job exceeds this service's limits: ${clauses.join('; ')}.`, {
    param: over[0].limit === 'time' ? 'hyperparameters' : 'method',
    extra: { limits: over, plan },
  });
}

/** Failures of a job before it was accepted: the request that created it answered an error, so a retry creates it afresh. */
const ACCEPTANCE_FAILURES = new Set(['api_interrupted', 'queue_unavailable']);

/**
 * The job an earlier request with this Idempotency-Key created, for a retry that took the key over (or, after
 * that request answered 503, used it again): null when there is none, or when it failed before it was
 * accepted (`api_interrupted`, `queue_unavailable`: the key is then released from it, so the retry creates
 * the job afresh). A job still in `validating_files` is accepted now.
 */
async function priorJob(deps: JobDeps, projectId: string, idempotencyKey: string): Promise<JobObject | null> {
  const { db } = deps;
  const job = await db.job.findUnique({ where: { projectId_idempotencyKey: { projectId, idempotencyKey } } });
  if (!job) return null;
  if (job.status === 'validating_files') {
    await addEvents(db, deps.redis, deps.config.queuePrefix, job.id, [
      { message: 'Acceptance resumed by a retry with the same Idempotency-Key', data: {} },
    ]);
    try {
      return await acceptJob(deps, projectId, job.id);
    } catch (e) {
      if (!(e instanceof ApiError && e.code === 'api_interrupted')) throw e;
    }
  } else if (!(job.status === 'failed' && ACCEPTANCE_FAILURES.has((job.error as { code?: string } | null)?.code ?? ''))) {
    return renderJob(db, job);
  }
  await db.job.updateMany({ where: { id: job.id, status: 'failed' }, data: { idempotencyKey: null } });
  return null;
}

/**
 * Moves a job from `validating_files` to `queued` and enqueues it (the job is accepted).
 * @throws ApiError 503 `api_interrupted` when the reconciler failed the row meanwhile, 503 `queue_unavailable` when Redis is down
 */
async function acceptJob(deps: JobDeps, projectId: string, id: string): Promise<JobObject> {
  const { db } = deps;
  // queued before it reaches the queue, so a worker never sees a job still validating
  const accepted = await db.job.updateMany({ where: { id, status: 'validating_files' }, data: { status: 'queued' } });
  if (!accepted.count) {
    // Settled meanwhile: cancelled, or failed `api_interrupted` by a worker's reconciler because this
    // request took longer than its grace period (it takes such rows for ones a dead API left behind).
    const settled = await findJob(db, projectId, id);
    if (settled.status === 'failed') {
      throw new ApiError(503, 'api_interrupted', `Job ${id} could not be queued in time and was failed; create it again`, {
        headers: { 'retry-after': '1' },
      });
    }
    return renderJob(db, settled);
  }
  await addEvents(db, deps.redis, deps.config.queuePrefix, id, [{ type: 'status', message: 'Job queued', data: { status: 'queued' } }]);
  try {
    await enqueueJob(deps.queue, id, id);
  } catch (e) {
    const error = { code: 'queue_unavailable', message: 'The job queue (Redis) is unavailable', param: null };
    await db.job.update({ where: { id }, data: { status: 'failed', error, finishedAt: new Date() } });
    throw new ApiError(503, 'queue_unavailable', `${error.message}: ${(e as Error).message}`, { headers: { 'retry-after': '5' } });
  }
  return renderJob(db, await findJob(db, projectId, id));
}

/**
 * Cancels a job: a queued job is cancelled at once (and removed from the queue); a running one goes
 * to `cancelling` and its worker is told over Redis (it also polls), so it stops within seconds.
 * @throws ApiError 409 `invalid_state` for a finished job.
 */
export async function cancelJob(deps: JobDeps, projectId: string, id: string): Promise<JobObject> {
  const { db } = deps;
  const j = await findJob(db, projectId, id);
  if (isTerminal(j.status)) throw new ApiError(409, 'invalid_state', `Job ${id} is ${j.status} and cannot be cancelled`, { param: 'id' });
  const now = new Date();
  const q = await db.job.updateMany({
    where: { id, status: { in: ['validating_files', 'queued'] } },
    data: { status: 'cancelled', cancelRequestedAt: now, finishedAt: now, etaSeconds: null },
  });
  if (q.count) {
    if (j.queueJobId) await deps.queue.remove(j.queueJobId).catch(() => 0);
    // a job re-queued to resume holds checkpoints: they go with it unless it asked to keep them
    await dropFinishedCheckpoints(db, id);
    await addEvents(db, deps.redis, deps.config.queuePrefix, id, [
      { type: 'status', message: 'Job cancelled', data: { status: 'cancelled' } },
    ]);
  } else {
    const r = await db.job.updateMany({ where: { id, status: 'running' }, data: { status: 'cancelling', cancelRequestedAt: now } });
    if (r.count) {
      await addEvents(db, deps.redis, deps.config.queuePrefix, id, [
        { type: 'status', message: 'Cancellation requested', data: { status: 'cancelling' } },
      ]);
      const msg: ControlMessage = { type: 'cancel', job_id: id };
      await deps.redis.publish(channels(deps.config.queuePrefix).control, JSON.stringify(msg)).catch(() => 0);
    } else {
      const now2 = await findJob(db, projectId, id);
      if (isTerminal(now2.status))
        throw new ApiError(409, 'invalid_state', `Job ${id} is ${now2.status} and cannot be cancelled`, { param: 'id' });
    }
  }
  return renderJob(db, await findJob(db, projectId, id));
}

/**
 * Deletes a finished job (succeeded, failed or cancelled) with its events, checkpoints and adapters, and frees
 * their blobs. A job that is not finished is refused: cancel it first.
 * @throws ApiError 404 `job_not_found`; 409 `job_not_finished` while it is queued, running or being cancelled
 */
export async function deleteJob(db: PrismaClient, projectId: string, id: string) {
  await findJob(db, projectId, id);
  return db.$transaction(async (tx) => {
    // the row locked, so no worker or cancel changes its status meanwhile
    const [row] = await tx.$queryRaw<{ status: string }[]>`SELECT status FROM jobs WHERE id = ${id} FOR UPDATE`;
    if (!row) throw notFound('job', id);
    if (!isTerminal(row.status))
      throw new ApiError(409, 'job_not_finished', `Job ${id} is ${row.status}; cancel it (POST /v1/jobs/${id}/cancel), then delete it`, {
        param: 'id',
      });
    const held = [
      ...(await tx.checkpoint.findMany({ where: { jobId: id }, select: { blobId: true } })),
      ...(await tx.adapter.findMany({ where: { jobId: id }, select: { blobId: true } })),
    ];
    await tx.job.delete({ where: { id } }); // events, checkpoints and adapters cascade
    await freeBlobs(
      tx,
      held.map((h) => h.blobId),
    );
    return { id, object: 'fine_tuning.job' as const, deleted: true };
  });
}

/** Filters and cursor of {@link listJobs}. */
export interface JobListQuery {
  /** page size (jobs) */
  limit: number;
  /** id of the last job of the previous page */
  after?: string;
  status?: JobStatus;
  model?: string;
  /** `metadata` pairs a job must all hold */
  metadata: [key: string, value: string][];
}

/**
 * A page of the project's jobs, newest first.
 * @throws ApiError 400 `invalid_cursor` when `after` is not a job of the project
 */
export async function listJobs(db: PrismaClient, projectId: string, q: JobListQuery) {
  let before: bigint | undefined;
  if (q.after) {
    const a = await db.job.findFirst({ where: { id: q.after, projectId }, select: { seq: true } });
    if (!a) throw new ApiError(400, 'invalid_cursor', `after: no job ${q.after}`, { param: 'after' });
    before = a.seq;
  }
  const meta = q.metadata.map(([k, v]) => ({ metadata: { path: [k], equals: v } }));
  const rows = await db.job.findMany({
    where: {
      projectId,
      ...(q.status ? { status: q.status } : {}),
      ...(q.model ? { model: q.model } : {}),
      ...(before !== undefined ? { seq: { lt: before } } : {}),
      ...(meta.length ? { AND: meta } : {}),
    },
    orderBy: { seq: 'desc' },
    take: q.limit + 1,
  });
  const extras = await jobExtras(
    db,
    rows.map((r) => r.id),
  );
  return listPage(
    rows.map((r) => jobObject(r, extras.get(r.id) ?? NO_EXTRAS)),
    q.limit,
  );
}

/**
 * A page of a job's checkpoints, newest (highest step) first.
 * @throws ApiError 400 `invalid_cursor` when `after` is not a checkpoint of the job
 */
export async function listCheckpoints(db: PrismaClient, jobId: string, q: { limit: number; after?: string }) {
  let below: number | undefined;
  if (q.after) {
    const c = await db.checkpoint.findFirst({ where: { id: q.after, jobId }, select: { step: true } });
    if (!c) throw new ApiError(400, 'invalid_cursor', `after: no checkpoint ${q.after} in this job`, { param: 'after' });
    below = c.step;
  }
  const rows = await db.checkpoint.findMany({
    where: { jobId, ...(below !== undefined ? { step: { lt: below } } : {}) },
    orderBy: { step: 'desc' },
    take: q.limit + 1,
    include: { blob: { select: { size: true, sha256: true } } },
  });
  return listPage(rows.map(checkpointObject), q.limit);
}

/**
 * The stored adapter of a job in `format` (its blob id, size in bytes and sha256 in hex).
 * @throws ApiError 404 `adapter_format_unavailable` for `peft` of a `rag` job (it trains no adapter: the
 *   bundle holds the retrieval index); 409 `adapter_not_ready` until the job has succeeded
 */
export async function findAdapter(
  db: PrismaClient,
  job: { id: string; status: string; method: unknown },
  format: (typeof ADAPTER_FORMATS)[number],
) {
  const type = (job.method as { type?: string } | null)?.type;
  if (format === 'peft' && type === 'rag')
    throw new ApiError(
      404,
      'adapter_format_unavailable',
      `Job ${job.id} uses method rag, which trains no LoRA adapter, so it has no PEFT adapter; download format=bundle (the retrieval index and settings for the base model)`,
      { param: 'format' },
    );
  const a = await db.adapter.findUnique({ where: { jobId_format: { jobId: job.id, format } } });
  if (!a)
    throw new ApiError(409, 'adapter_not_ready', `Job ${job.id} is ${job.status}; its adapter is available once it has succeeded`, {
      param: 'id',
    });
  return a;
}
