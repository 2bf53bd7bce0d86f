/**
 * The advisor on the API side: recommendations (what to run on a device for a training file), stored per
 * project. `estimate` ranks candidates with the fitted rules of the guidelines bench (core advisor);
 * `measure` also creates short probe jobs for the top candidates and, once they have finished, ranks them by
 * their measured validation metric (computed from the jobs on every read). Starting a candidate creates its
 * job through createJob, so its validation and plan are those of POST /v1/jobs.
 */
import {
  AdvisorRulesMissingError,
  apiDevice,
  compareMeasured,
  isTerminal,
  loadAdvisorRules,
  MEASURE_PROBES,
  measuredOf,
  newId,
  parseJsonlText,
  parseLlamaConfig,
  planCandidate,
  probeHyperparameters,
  recommend,
  summarizeTrainingData,
  type AdvisorModel,
  type AdvisorRules,
  type Candidate,
  type Config,
} from '@edgetune/core';
import { blobToBuffer, listWorkers, planningWorker, type PrismaClient } from '@edgetune/store';
import { ApiError, notFound } from '../errors.js';
import { listPage } from '../serialize.js';
import { createJob, fineTuneFile, type JobDeps } from './jobs.js';
import type { JobCreateBody, JobObject, RecommendationCreateBody, RecommendationObjectType } from '../schemas.js';

/** What the recommendation service needs: the job service's dependencies and the advisor's rules file. */
export interface RecommendationDeps extends JobDeps {
  config: JobDeps['config'] & Pick<Config, 'advisorRulesPath'>;
}

export { MEASURE_PROBES };

/** One probe job of a `measure` recommendation, as stored. */
interface StoredProbe {
  /** index into the recommendation's candidates */
  candidate: number;
  job_id: string | null;
  /** why the probe job could not be created */
  error: { code: string; message: string } | null;
}

/** The request fields kept with a recommendation. */
interface StoredRequest {
  device: RecommendationCreateBody['device'] | null;
  time_budget_s: number;
  models: string[];
}

/** The fitted rules the advisor answers from (EDGETUNE_ADVISOR_RULES, else loadAdvisorRules' default). @throws ApiError 503 `advisor_rules_missing` */
function rulesOf(deps: RecommendationDeps): AdvisorRules {
  try {
    return loadAdvisorRules(deps.config.advisorRulesPath);
  } catch (e) {
    if (e instanceof AdvisorRulesMissingError) throw new ApiError(503, e.code, e.message);
    throw e;
  }
}

/** The candidate base models: those named (each must be installed), else every installed one. */
async function advisorModels(db: PrismaClient, ids: string[] | undefined) {
  const rows = await db.baseModel.findMany({ where: ids ? { id: { in: ids } } : {}, orderBy: { id: 'asc' } });
  for (const id of ids ?? [])
    if (!rows.some((r) => r.id === id))
      throw new ApiError(400, 'model_not_found', `Base model ${JSON.stringify(id)} is not installed; see GET /v1/models`, {
        param: 'models',
      });
  return rows.flatMap((r): (AdvisorModel & { hosts: string[] })[] => {
    try {
      const shape = parseLlamaConfig(r.config as Record<string, unknown>);
      return [{ id: r.id, shape, storedDtype: r.storedDtype, maxPositionEmbeddings: r.maxPositionEmbeddings, hosts: r.hosts }];
    } catch {
      return []; // a model the planner cannot read is no candidate
    }
  });
}

/** The device to advise for: a live worker's profile (`worker_id`), else the stated budget over the planning worker's or the API's defaults. */
async function advisorDevice(deps: JobDeps, device: RecommendationCreateBody['device'], hosts: string[]) {
  if (device && 'worker_id' in device) {
    const worker = (await listWorkers(deps.db)).find((w) => w.id === device.worker_id);
    if (!worker)
      throw new ApiError(400, 'worker_not_found', `No worker ${JSON.stringify(device.worker_id)}; see GET /v1/workers`, {
        param: 'device.worker_id',
      });
    return apiDevice(deps.config, null, worker).device;
  }
  const requested = device ? { memory_budget_bytes: device.memory_budget_bytes ?? null, threads: device.threads ?? null } : null;
  return apiDevice(deps.config, requested, await planningWorker(deps.db, deps.config.workerHeartbeatMs, hosts)).device;
}

/** The POST /v1/jobs body of a candidate on the recommendation's files and device. */
function jobBody(
  c: Candidate,
  rec: { id: string; trainingFile: string; validationFile: string | null; request: StoredRequest },
  extra: { hyperparameters?: Partial<Candidate['job']['hyperparameters']>; metadata?: Record<string, string> } = {},
): JobCreateBody {
  const d = rec.request.device;
  const device = d && !('worker_id' in d) ? d : undefined;
  return {
    ...(c.job as Pick<JobCreateBody, 'model' | 'method'>),
    training_file: rec.trainingFile,
    validation_file: rec.validationFile,
    hyperparameters: { ...c.job.hyperparameters, ...extra.hyperparameters },
    ...(device ? { device } : {}),
    metadata: { recommendation_id: rec.id, ...extra.metadata },
  } as JobCreateBody;
}

/**
 * Creates a recommendation. `estimate`: the ranked candidates at once. `measure` (needs a validation file):
 * also one probe job for each of the top {@link MEASURE_PROBES} candidates, each with an equal share of the
 * time budget, early stopping on, and metadata `recommendation_id`; a probe that cannot be created is listed
 * with its error.
 * @throws ApiError 400 `file_not_found` / `invalid_file_purpose` / `model_not_found` / `worker_not_found`,
 *   400 `validation_file_required` (measure without a validation file), 503 `advisor_rules_missing`
 */
export async function createRecommendation(
  deps: RecommendationDeps,
  projectId: string,
  body: RecommendationCreateBody,
): Promise<RecommendationObjectType> {
  const { db } = deps;
  const train = await fineTuneFile(db, projectId, body.training_file, 'training_file');
  const val = body.validation_file ? await fineTuneFile(db, projectId, body.validation_file, 'validation_file') : null;
  if (body.mode === 'measure' && !val)
    throw new ApiError(
      400,
      'validation_file_required',
      'mode "measure" ranks probe jobs by their validation metric: give a validation_file',
      {
        param: 'validation_file',
      },
    );
  const rules = rulesOf(deps);
  const models = await advisorModels(db, body.models);
  const device = await advisorDevice(deps, body.device, [...new Set(models.flatMap((m) => m.hosts))]);
  const data = summarizeTrainingData(parseJsonlText((await blobToBuffer(db, train.blobId)).toString('utf8'), train.id));
  const rec = recommend({ data, hasValidation: !!val, timeBudgetS: body.time_budget_s, models }, rules, (spec) =>
    planCandidate(spec, device, data.n_train),
  );
  const request: StoredRequest = { device: body.device ?? null, time_budget_s: body.time_budget_s, models: models.map((m) => m.id) };
  const row = await db.recommendation.create({
    data: {
      id: newId('recommendation'),
      projectId,
      mode: body.mode,
      trainingFile: train.id,
      validationFile: val?.id ?? null,
      request: request as object,
      data: data as object,
      candidates: rec.candidates as object[],
      leftOut: rec.left_out as object[],
      rulesSource: rec.rules_source,
    },
  });
  if (body.mode === 'measure') {
    const probes = await createProbes(deps, projectId, { ...row, request }, rec.candidates, models);
    await db.recommendation.update({ where: { id: row.id }, data: { probes: probes as object[] } });
  }
  return getRecommendation(db, projectId, row.id);
}

/**
 * The probe jobs of a measure recommendation: the top candidates, each on its share of the time budget, with
 * at least one step per exit window (`auto` exit layers of its model), which an edge method's job needs.
 */
async function createProbes(
  deps: JobDeps,
  projectId: string,
  rec: { id: string; trainingFile: string; validationFile: string | null; request: StoredRequest },
  candidates: Candidate[],
  models: AdvisorModel[],
): Promise<StoredProbe[]> {
  const top = candidates.slice(0, MEASURE_PROBES);
  const share = rec.request.time_budget_s / Math.max(1, top.length);
  const out: StoredProbe[] = [];
  for (const [i, c] of top.entries()) {
    const layers = models.find((m) => m.id === c.model)?.shape.numHiddenLayers ?? 1;
    const body = jobBody(c, rec, {
      hyperparameters: probeHyperparameters(c, share, layers),
      metadata: { recommendation_candidate: String(i) },
    });
    try {
      const job = await createJob(deps, projectId, body);
      out.push({ candidate: i, job_id: job.id, error: null });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      out.push({ candidate: i, job_id: null, error: { code: e.code, message: e.message } });
    }
  }
  return out;
}

type RecommendationRow = NonNullable<Awaited<ReturnType<PrismaClient['recommendation']['findFirst']>>>;

/** The recommendation object of a row; a measure recommendation's probes are read from their jobs now. */
async function renderRecommendation(db: PrismaClient, r: RecommendationRow): Promise<RecommendationObjectType> {
  const request = r.request as unknown as StoredRequest;
  const candidates = r.candidates as unknown as Candidate[];
  let status: RecommendationObjectType['status'] = 'succeeded';
  let probes: RecommendationObjectType['probes'] = null;
  let best: number | null = candidates.length ? 0 : null;
  if (r.mode === 'measure') {
    const stored = (r.probes ?? []) as unknown as StoredProbe[];
    const ids = stored.flatMap((p) => (p.job_id ? [p.job_id] : []));
    const jobs = new Map((await db.job.findMany({ where: { id: { in: ids } } })).map((j) => [j.id, j]));
    probes = stored.map((p) => {
      const j = p.job_id ? jobs.get(p.job_id) : undefined;
      const jobError = j?.error as { code: string; message: string } | null | undefined;
      return {
        candidate: p.candidate,
        job_id: p.job_id,
        status: j?.status ?? 'failed',
        measured: j?.status === 'succeeded' ? measuredOf(j.result) : null,
        error: p.error ?? (j?.status === 'cancelled' ? { code: 'cancelled', message: 'the probe job was cancelled' } : (jobError ?? null)),
      };
    });
    const finished = probes.every((p) => isTerminal(p.status));
    // accuracy first (higher is better), then loss (lower is better)
    const ranked = probes.filter((p) => p.measured).sort((a, b) => compareMeasured(a.measured!, b.measured!));
    status = !finished ? 'measuring' : ranked.length ? 'succeeded' : 'failed';
    best = finished && ranked.length ? ranked[0].candidate : null;
    if (finished) probes = [...ranked, ...probes.filter((p) => !p.measured)];
  }
  return {
    id: r.id,
    object: 'recommendation',
    created_at: Math.floor(r.createdAt.getTime() / 1000),
    mode: r.mode as 'estimate' | 'measure',
    status,
    training_file: r.trainingFile,
    validation_file: r.validationFile,
    device: (request.device ?? null) as RecommendationObjectType['device'],
    time_budget_s: request.time_budget_s,
    models: request.models,
    data: r.data as unknown as RecommendationObjectType['data'],
    rules_source: r.rulesSource,
    best_candidate: best,
    candidates: candidates as unknown as RecommendationObjectType['candidates'],
    left_out: r.leftOut as unknown as RecommendationObjectType['left_out'],
    probes,
  };
}

async function findRecommendation(db: PrismaClient, projectId: string, id: string) {
  const r = await db.recommendation.findFirst({ where: { id, projectId } });
  if (!r) throw notFound('recommendation', id);
  return r;
}

/** A recommendation of the project. @throws ApiError 404 `recommendation_not_found` */
export async function getRecommendation(db: PrismaClient, projectId: string, id: string): Promise<RecommendationObjectType> {
  return renderRecommendation(db, await findRecommendation(db, projectId, id));
}

/**
 * A page of the project's recommendations, newest first.
 * @throws ApiError 400 `invalid_cursor` when `after` is not a recommendation of the project
 */
export async function listRecommendations(db: PrismaClient, projectId: string, q: { limit: number; after?: string }) {
  let before: bigint | undefined;
  if (q.after) {
    const a = await db.recommendation.findFirst({ where: { id: q.after, projectId }, select: { seq: true } });
    if (!a) throw new ApiError(400, 'invalid_cursor', `after: no recommendation ${q.after}`, { param: 'after' });
    before = a.seq;
  }
  const rows = await db.recommendation.findMany({
    where: { projectId, ...(before !== undefined ? { seq: { lt: before } } : {}) },
    orderBy: { seq: 'desc' },
    take: q.limit + 1,
  });
  return listPage(await Promise.all(rows.map((r) => renderRecommendation(db, r))), q.limit);
}

/**
 * Creates the job of a candidate (default: the best measured one, else the first) through createJob, on the
 * recommendation's files and device, with metadata `recommendation_id`.
 * @throws ApiError 404 `recommendation_not_found`, 400 `invalid_candidate`, and createJob's errors
 */
export async function startRecommendation(
  deps: JobDeps,
  projectId: string,
  id: string,
  candidate: number | undefined,
  idempotencyKey: string | null = null,
): Promise<JobObject> {
  const row = await findRecommendation(deps.db, projectId, id);
  const rendered = await renderRecommendation(deps.db, row);
  const candidates = row.candidates as unknown as Candidate[];
  const index = candidate ?? rendered.best_candidate ?? 0;
  const c = candidates[index];
  if (!c)
    throw new ApiError(
      400,
      'invalid_candidate',
      candidates.length
        ? `candidate ${index} is out of range: the recommendation has ${candidates.length} (0..${candidates.length - 1})`
        : 'the recommendation has no candidates (each left-out candidate says why)',
      { param: 'candidate' },
    );
  const rec = { ...row, request: row.request as unknown as StoredRequest };
  return createJob(deps, projectId, jobBody(c, rec, { metadata: { recommendation_candidate: String(index) } }), idempotencyKey);
}
