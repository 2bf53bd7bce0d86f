/**
 * Request/response schemas (TypeBox -> JSON Schema). They validate requests, serialize responses, and
 * generate the OpenAPI 3.1 document; named schemas become `components.schemas`.
 */
import { Type, type Static, type TSchema } from '@fastify/type-provider-typebox';
import { JOB_STATUSES } from './shared/status.js';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Auto = <T extends TSchema>(t: T) => Type.Union([Type.Literal('auto'), t]);
const Timestamp = (description: string) => Type.Integer({ description: `${description} (unix seconds)` });

/** A `$ref` to a named schema, typed as that schema. */
export function ref<T extends TSchema>(schema: T): T {
  return Type.Unsafe<Static<T>>(Type.Ref((schema as { $id?: string }).$id!)) as unknown as T;
}

export const ProblemItem = Type.Object({
  param: Type.Optional(Nullable(Type.String())),
  line: Type.Optional(Type.Integer({ description: '1-based line of the uploaded file' })),
  code: Type.Optional(Type.String()),
  message: Type.String(),
}, { $id: 'ProblemItem', additionalProperties: true });

export const Problem = Type.Object({
  type: Type.String({ description: 'URI naming the problem type' }),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  instance: Type.Optional(Type.String()),
  code: Type.String({ description: 'stable machine-readable error code' }),
  param: Nullable(Type.String()),
  errors: Type.Optional(Type.Array(ref(ProblemItem))),
  request_id: Type.Optional(Type.String()),
}, { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json)' });

const listOf = <T extends TSchema>(item: T, id: string) => Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(ref(item)),
  has_more: Type.Boolean(),
  first_id: Nullable(Type.String()),
  last_id: Nullable(Type.String()),
}, { $id: id });

export const FileObject = Type.Object({
  id: Type.String({ examples: ['file_abc123'] }),
  object: Type.Literal('file'),
  bytes: Type.Integer(),
  created_at: Timestamp('upload time'),
  filename: Type.String(),
  purpose: Type.String(),
  status: Type.Literal('processed'),
  status_details: Type.Null(),
  records: Type.Integer({ description: 'records (non-blank lines) in the file' }),
  sha256: Type.String(),
}, { $id: 'File' });
export const FileList = listOf(FileObject, 'FileList');
export const DeletedFile = Type.Object({ id: Type.String(), object: Type.Literal('file'), deleted: Type.Boolean() }, { $id: 'DeletedFile' });

const ExitLayers = Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: 64 });

export const MethodInput = Type.Object({
  type: Type.Literal('edge_llm'),
  edge_llm: Type.Optional(Type.Object({
    exit_layers: Type.Optional(Auto(ExitLayers)),
    schedule: Type.Optional(Type.Enum(['sequential', 'round_robin', 'random'])),
    train_heads: Type.Optional(Type.Boolean()),
    voting: Type.Optional(Type.Literal('auto', { description: 'the voting rule is chosen on validation data' })),
  }, { additionalProperties: false })),
}, { $id: 'MethodInput', additionalProperties: false });

export const HyperparametersInput = Type.Object({
  n_epochs: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 100 }))),
  batch_size: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 256 }))),
  learning_rate_multiplier: Type.Optional(Auto(Type.Number({ exclusiveMinimum: 0, maximum: 100 }))),
  learning_rate: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'peak learning rate; overrides learning_rate_multiplier' })),
  max_steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'optimizer steps in total; overrides n_epochs' })),
  gradient_accumulation_steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  warmup_steps: Type.Optional(Auto(Type.Integer({ minimum: 0 }))),
  lr_scheduler: Type.Optional(Type.Enum(['cosine', 'linear', 'constant'])),
  weight_decay: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  max_grad_norm: Type.Optional(Type.Number({ minimum: 0 })),
  lora_r: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  lora_alpha: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  lora_dropout: Type.Optional(Type.Number({ minimum: 0, maximum: 0.9 })),
  target_modules: Type.Optional(Type.Union([Type.Literal('all-linear'), Type.Array(Type.String(), { minItems: 1, maxItems: 7 })])),
  max_length: Type.Optional(Type.Integer({ minimum: 8, maximum: 32768, description: 'tokens per example after truncation' })),
}, { $id: 'HyperparametersInput', additionalProperties: false });

export const Metadata = Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 512 }), { maxProperties: 16, description: 'up to 16 string pairs' });

export const JobCreate = Type.Object({
  model: Type.String({ minLength: 1, description: 'a base model id from GET /v1/models' }),
  training_file: Type.String({ minLength: 1 }),
  validation_file: Type.Optional(Nullable(Type.String({ minLength: 1 }))),
  method: Type.Optional(ref(MethodInput)),
  hyperparameters: Type.Optional(ref(HyperparametersInput)),
  checkpointing: Type.Optional(Type.Object({ every_n_steps: Type.Optional(Auto(Type.Integer({ minimum: 1 }))) }, { additionalProperties: false })),
  seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2147483647 })),
  suffix: Type.Optional(Nullable(Type.String({ maxLength: 64, pattern: '^[A-Za-z0-9_.-]*$' }))),
  metadata: Type.Optional(Nullable(Metadata)),
}, { $id: 'JobCreate', additionalProperties: false });

export const JobErrorObject = Type.Object({ code: Type.String(), message: Type.String(), param: Nullable(Type.String()) }, { $id: 'JobError' });

const PathMetrics = Type.Object({ accuracy: Nullable(Type.Number()), loss: Type.Number(), perplexity: Type.Number() }, { additionalProperties: true });

export const JobResult = Type.Object({
  voting_rule: Nullable(Type.String()),
  voted_accuracy: Nullable(Type.Number({ description: 'validation accuracy of the vote with the chosen rule' })),
  exits: Type.Array(Type.Object({ layer: Type.Integer(), accuracy: Nullable(Type.Number()), loss: Type.Number(), perplexity: Type.Number() })),
  voted: Type.Record(Type.String(), PathMetrics, { description: 'validation metrics of each voting rule' }),
  validation_examples: Type.Integer(),
  train_examples: Type.Integer(),
  steps: Type.Integer(),
  tokens: Type.Integer(),
  tokens_per_sec: Type.Number(),
  train_seconds: Type.Number(),
  final_loss: Nullable(Type.Number()),
}, { $id: 'JobResult', description: "the engine's report: per-exit and voted validation metrics" });

export const Job = Type.Object({
  id: Type.String({ examples: ['ftjob_abc123'] }),
  object: Type.Literal('fine_tuning.job'),
  created_at: Timestamp('creation time'),
  updated_at: Timestamp('last change'),
  started_at: Nullable(Type.Integer()),
  finished_at: Nullable(Type.Integer()),
  estimated_finish: Nullable(Type.Integer()),
  status: Type.Enum(JOB_STATUSES),
  model: Type.String(),
  fine_tuned_model: Nullable(Type.String()),
  training_file: Type.String(),
  validation_file: Nullable(Type.String()),
  method: Type.Object({ type: Type.Literal('edge_llm'), edge_llm: Type.Object({ exit_layers: Type.Array(Type.Integer()), schedule: Type.String(), train_heads: Type.Boolean(), voting: Type.String() }) }),
  hyperparameters: Type.Object({
    n_epochs: Type.Integer(), batch_size: Type.Integer(), learning_rate_multiplier: Type.Number(), learning_rate: Type.Number(),
    max_steps: Nullable(Type.Integer()), gradient_accumulation_steps: Type.Integer(), warmup_steps: Type.Integer(), lr_scheduler: Type.String(),
    weight_decay: Type.Number(), max_grad_norm: Type.Number(), lora_r: Type.Integer(), lora_alpha: Type.Number(), lora_dropout: Type.Number(),
    target_modules: Type.Array(Type.String()), max_length: Type.Integer(),
  }),
  checkpointing: Type.Object({ every_n_steps: Type.Integer() }),
  seed: Type.Integer(),
  suffix: Nullable(Type.String()),
  metadata: Metadata,
  progress: Type.Object({
    step: Type.Integer(),
    total_steps: Type.Integer(),
    percent: Type.Number(),
    eta_seconds: Nullable(Type.Integer()),
  }),
  latest_metrics: Nullable(Type.Record(Type.String(), Type.Unknown())),
  result: Nullable(ref(JobResult)),
  trained_tokens: Nullable(Type.Integer()),
  error: Nullable(ref(JobErrorObject)),
  attempt: Type.Integer({ description: 'times a worker picked the job up' }),
  checkpoints: Type.Object({ count: Type.Integer(), latest_id: Nullable(Type.String()) }),
  result_files: Type.Array(Type.String(), { description: 'adapter formats ready for download (GET /v1/jobs/{id}/adapter?format=...)' }),
  project_id: Type.String(),
}, { $id: 'Job' });
export const JobList = listOf(Job, 'JobList');

export const JobEvent = Type.Object({
  id: Type.String({ examples: ['evt_abc123'] }),
  object: Type.Literal('fine_tuning.job.event'),
  created_at: Type.Integer(),
  level: Type.String(),
  type: Type.String({ description: 'message | metrics | status' }),
  message: Type.String(),
  data: Nullable(Type.Record(Type.String(), Type.Unknown())),
}, { $id: 'JobEvent' });
export const JobEventList = listOf(JobEvent, 'JobEventList');

export const Checkpoint = Type.Object({
  id: Type.String({ examples: ['ckpt_abc123'] }),
  object: Type.Literal('fine_tuning.job.checkpoint'),
  created_at: Type.Integer(),
  fine_tuning_job_id: Type.String(),
  step_number: Type.Integer(),
  metrics: Type.Record(Type.String(), Type.Unknown()),
  bytes: Type.Integer(),
  sha256: Type.String(),
}, { $id: 'Checkpoint' });
export const CheckpointList = listOf(Checkpoint, 'CheckpointList');

export const ModelObject = Type.Object({
  id: Type.String(),
  object: Type.Literal('model'),
  created: Type.Integer(),
  owned_by: Type.String(),
  n_params: Type.Integer(),
  hidden_size: Type.Integer(),
  vocab_size: Type.Integer(),
  limits: Type.Object({
    n_layers: Type.Integer(), max_lora_rank: Type.Integer(), max_length: Type.Integer(),
    target_modules: Type.Array(Type.String()), default_exit_layers: Type.Array(Type.Integer()),
  }),
  hosts: Type.Array(Type.String(), { description: 'hosts (API or workers) that have this model in their models folder' }),
}, { $id: 'Model' });
export const ModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(ref(ModelObject)) }, { $id: 'ModelList' });

export const Project = Type.Object({ id: Type.String(), object: Type.Literal('project'), name: Type.String(), created_at: Type.Integer() }, { $id: 'Project' });
export const ProjectList = listOf(Project, 'ProjectList');
export const ApiKey = Type.Object({
  id: Type.String(),
  object: Type.Literal('api_key'),
  project_id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'first characters of the secret' }),
  admin: Type.Boolean(),
  created_at: Type.Integer(),
  last_used_at: Nullable(Type.Integer()),
  revoked_at: Nullable(Type.Integer()),
  secret: Type.Optional(Type.String({ description: 'the key itself; returned once, at creation' })),
}, { $id: 'ApiKey' });
export const ApiKeyList = listOf(ApiKey, 'ApiKeyList');

/** Every named schema, registered with app.addSchema in this order. */
export const NAMED_SCHEMAS: TSchema[] = [ProblemItem, Problem, FileObject, FileList, DeletedFile, MethodInput, HyperparametersInput, JobCreate, JobErrorObject, JobResult, Job, JobList, JobEvent, JobEventList, Checkpoint, CheckpointList, ModelObject, ModelList, Project, ProjectList, ApiKey, ApiKeyList];

const listProps = {
  after: Type.Optional(Type.String({ description: 'id of the last item of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
};

/** Cursor-list query (`after`, `limit`). */
export const ListQuery = Type.Object(listProps, { additionalProperties: false });

/** Cursor-list query plus `extra` properties. */
export function listQuery<P extends Record<string, TSchema>>(extra: P, opts: { patternProperties?: Record<string, TSchema> } = {}) {
  return Type.Object({ ...listProps, ...extra }, { additionalProperties: false, ...opts });
}

export const IdParams = Type.Object({ id: Type.String() });

/** Problem responses (application/problem+json) for the given statuses. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of statuses) {
    out[s] = { description: PROBLEM_DESCRIPTIONS[s] ?? 'Problem', content: { 'application/problem+json': { schema: ref(Problem) } } } as unknown as TSchema;
  }
  return out;
}

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request (each bad field listed in `errors`)',
  401: 'Missing or invalid API key',
  403: 'The key may not do this (admin only)',
  404: 'No such resource in this project',
  409: 'Conflict with the resource state or an earlier request with the same Idempotency-Key',
  413: 'Upload too large',
  415: 'Unsupported media type',
  416: 'Range not satisfiable',
  422: 'The dataset has invalid lines (each listed in `errors` by line number)',
  503: 'A dependency (PostgreSQL, Redis) is unavailable',
};

export type JobCreateBody = Static<typeof JobCreate>;
export type JobObject = Static<typeof Job>;
