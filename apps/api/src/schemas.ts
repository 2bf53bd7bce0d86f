/**
 * Request/response schemas (TypeBox -> JSON Schema). They validate requests, serialize responses, and
 * generate the OpenAPI 3.1 document; named schemas become `components.schemas`.
 */
import { Type, type Static, type TSchema } from '@fastify/type-provider-typebox';
import { JOB_STATUSES, WEBHOOK_EVENT_TYPES } from '@edgetune/core';
import {
  AUTO_EVALUATIONS,
  BITS_RULES,
  MAX_RAG_K,
  MAX_TIME_BUDGET_S,
  METHOD_TYPES,
  PRUNE_METHODS,
  RAG_DEFAULTS,
  SPARSITY_RULES,
} from '@edgetune/core';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

// Bounds no real request reaches; they keep hostile values (1e308, 2^63) out of the planner and the database.
/** optimizer steps (max_steps, warmup_steps, eval_steps, checkpointing.every_n_steps) */
const MAX_STEPS = 1_000_000;
/** exit-head LoRA rank: about the hidden size of the largest models an edge box tunes */
const MAX_HEAD_RANK = 1024;
/** twice the largest lora_r (alpha = 2r is the common choice) */
const MAX_LORA_ALPHA = 2048;
/** a decoder layer index */
const MAX_LAYER_INDEX = 1023;
/** a device memory budget: 4 TiB */
const MAX_MEMORY_BYTES = 2 ** 42;
/** an id or model name in a request body */
const MAX_ID_LENGTH = 256;
const Auto = <T extends TSchema>(t: T) => Type.Union([Type.Literal('auto'), t]);
const Timestamp = (description: string) => Type.Integer({ description: `${description} (unix seconds)` });

/** A `$ref` to a named schema, typed as that schema. */
export function ref<T extends TSchema>(schema: T): T {
  return Type.Unsafe<Static<T>>(Type.Ref((schema as { $id?: string }).$id!)) as unknown as T;
}

export const ProblemItem = Type.Object(
  {
    param: Type.Optional(Nullable(Type.String())),
    line: Type.Optional(Type.Integer({ description: '1-based line of the uploaded file' })),
    code: Type.Optional(Type.String()),
    message: Type.String(),
  },
  { $id: 'ProblemItem', additionalProperties: true },
);

export const Problem = Type.Object(
  {
    type: Type.String({ description: 'URI naming the problem type' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
    code: Type.String({ description: 'stable machine-readable error code' }),
    param: Nullable(Type.String()),
    errors: Type.Optional(Type.Array(ref(ProblemItem))),
    request_id: Type.Optional(Type.String()),
  },
  { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json)' },
);

const listOf = <T extends TSchema>(item: T, id: string) =>
  Type.Object(
    {
      object: Type.Literal('list'),
      data: Type.Array(ref(item)),
      has_more: Type.Boolean(),
      first_id: Nullable(Type.String()),
      last_id: Nullable(Type.String()),
    },
    { $id: id },
  );

export const FileObject = Type.Object(
  {
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
  },
  { $id: 'File' },
);
export const FileList = listOf(FileObject, 'FileList');
export const DeletedFile = Type.Object(
  { id: Type.String(), object: Type.Literal('file'), deleted: Type.Boolean() },
  { $id: 'DeletedFile' },
);
export const DeletedJob = Type.Object(
  { id: Type.String(), object: Type.Literal('fine_tuning.job'), deleted: Type.Boolean() },
  { $id: 'DeletedJob' },
);

const ExitLayers = Type.Array(Type.Integer({ minimum: 0, maximum: MAX_LAYER_INDEX }), { minItems: 1, maxItems: 64 });

const budgetProps = {
  target_sparsity: Type.Number({
    minimum: 0,
    maximum: 0.9,
    description: "mean fraction of each decoder layer's linear weights to prune (0 = prune nothing)",
  }),
  avg_bits: Type.Number({
    minimum: 2,
    maximum: 16,
    description: 'average weight bit-width over the layers (16 = no quantization with bits_rule "uniform")',
  }),
};
const methodDoc = 'pruning method: Wanda (weight x activation norm) or SparseGPT (Hessian-based, slower)';
const sparsityRuleDoc = "per-layer sparsity from sensitivity: `inverse` (the paper's), `owl` (bounded to target +- 0.08), `uniform`";
const bitsRuleDoc =
  'per-layer bits: `budgeted` (greedy under avg_bits over 2/3/4/8 bits), `mean` (8 bits above mean sensitivity, else 4), `uniform` (avg_bits everywhere: 2, 3, 4, 8 or 16)';
const groupSizeDoc = 'quantization scales per group of this many input columns (0 = one per output channel)';

export const CompressionInput = Type.Object(
  {
    ...budgetProps,
    method: Type.Optional(Type.Enum(PRUNE_METHODS, { description: `${methodDoc}; default wanda` })),
    sparsity_rule: Type.Optional(
      Type.Enum(SPARSITY_RULES, {
        description: `${sparsityRuleDoc}; default owl (lower perplexity than inverse and uniform at every budget measured: README)`,
      }),
    ),
    bits_rule: Type.Optional(Type.Enum(BITS_RULES, { description: `${bitsRuleDoc}; default budgeted` })),
    group_size: Type.Optional(Type.Integer({ minimum: 0, maximum: 8192, description: `${groupSizeDoc}; default 0` })),
  },
  {
    $id: 'CompressionInput',
    additionalProperties: false,
    description:
      'Layer-wise unified compression (LUC) budget: the base model is pruned and quantized layer by layer before tuning, following a policy ' +
      "built from per-layer sensitivities. The policy of a model's weights and budget is made once and reused by every later job with the same model " +
      'content (fingerprint) and budget (GET /v1/policies).',
  },
);

/** A resolved compression budget (every field set): with the base model and its fingerprint, the key of a policy. */
export const Compression = Type.Object(
  {
    ...budgetProps,
    method: Type.Enum(PRUNE_METHODS, { description: methodDoc }),
    sparsity_rule: Type.Enum(SPARSITY_RULES, { description: sparsityRuleDoc }),
    bits_rule: Type.Enum(BITS_RULES, { description: bitsRuleDoc }),
    group_size: Type.Integer({ description: groupSizeDoc }),
  },
  { $id: 'Compression', description: 'a LUC budget with defaults filled in' },
);

const methodTypeDoc =
  '`edge_llm`: Edge-LLM adaptive layer tuning (exit windows, voting; optionally on a LUC-compressed model); `lora`: LoRA on every layer, ' +
  'loss at lm_head; `rag`: no training, the base model answers with the top-k training examples (BM25) placed before each prompt; ' +
  '`rag_edge_llm` / `rag_lora`: the tuning method trained and evaluated on prompts augmented the same way';
const ragKDoc = 'training examples retrieved per prompt (BM25)';
const ragShareDoc = 'largest fraction of max_length the retrieved examples may take (they are cut first; the prompt never is)';
const ragK = (description: string) => Type.Integer({ minimum: 1, maximum: MAX_RAG_K, description });
const ragShare = (description: string) => Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, description });

export const MethodInput = Type.Object(
  {
    type: Type.Enum(METHOD_TYPES, { description: methodTypeDoc }),
    rag: Type.Optional(
      Type.Object(
        {
          k: Type.Optional(ragK(`${ragKDoc}; default ${RAG_DEFAULTS.k}`)),
          context_share: Type.Optional(ragShare(`${ragShareDoc}; default ${RAG_DEFAULTS.context_share}`)),
        },
        { additionalProperties: false, description: 'retrieval (rag, rag_edge_llm and rag_lora only)' },
      ),
    ),
    edge_llm: Type.Optional(
      Type.Object(
        {
          exit_layers: Type.Optional(Auto(ExitLayers)),
          schedule: Type.Optional(Type.Enum(['sequential', 'round_robin', 'random'])),
          train_heads: Type.Optional(Type.Boolean()),
          head_rank: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: MAX_HEAD_RANK,
              description:
                'exit heads: 0 = a full trainable copy of lm_head per exit (official code); r > 0 = lm_head shared and frozen plus a rank-r LoRA per exit (far less memory). Default 0',
            }),
          ),
          prefix: Type.Optional(
            Type.Enum(['backbone', 'adapted'], {
              description:
                'layers before the trained window: backbone = without LoRA (official code; exit k at inference = backbone, then its window with LoRA); adapted = with the LoRA earlier windows trained (exit k = LoRA on layers 0..k, one forward pass for all exits; with round_robin the windows of a cycle share micro-batches and hand their outputs on, so no layer runs twice). Default backbone',
            }),
          ),
          voting: Type.Optional(Type.Literal('auto', { description: 'the voting rule is chosen on validation data' })),
          compression: Type.Optional(Nullable(ref(CompressionInput))),
        },
        { additionalProperties: false, description: 'Edge-LLM settings (edge_llm and rag_edge_llm only; refused for the other methods)' },
      ),
    ),
  },
  { $id: 'MethodInput', additionalProperties: false },
);

export const DeviceInput = Type.Object(
  {
    memory_budget_bytes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_MEMORY_BYTES,
        description: "memory the job may use (process resident set), bytes; default: the worker's free memory",
      }),
    ),
    threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: "matmul (BLAS) threads; default: the worker's cores" })),
  },
  {
    $id: 'DeviceInput',
    additionalProperties: false,
    description:
      'The device the job must fit. The planner picks micro-batch, gradient accumulation, exit windows and prefix caching for it; ' +
      'a job whose plan cannot fit is refused (422 `plan_does_not_fit`) before it is queued.',
  },
);

const PlanForecast = Type.Object({
  peak_rss_bytes: Type.Integer({ description: 'process resident memory at peak (compared with the budget)' }),
  peak_tf_bytes: Type.Integer({ description: 'TF.js tensor bytes at the peak of a step' }),
  weight_bytes: Type.Integer(),
  trainable_bytes: Type.Integer({ description: 'LoRA, exit heads and their optimizer state' }),
  activation_bytes: Type.Integer(),
  prefix_cache_bytes: Type.Integer(),
  step_ms: Type.Number({ description: 'per optimizer step (method rag: one forward pass of a batch)' }),
  total_ms: Type.Number({ description: 'step_ms x total steps, at most the time budget (0 for rag)' }),
  flops_per_step: Type.Number({ description: 'matmul FLOPs per optimizer step' }),
});

export const JobPlan = Type.Object(
  {
    source: Type.Enum(['api', 'worker'], {
      description: '`api`: planned at creation (sequence length = max_length, so an upper bound); `worker`: the plan the worker followed',
    }),
    fits: Type.Boolean(),
    reason: Nullable(Type.String({ description: 'why it does not fit' })),
    exit_layers: Type.Array(Type.Integer(), { description: 'exits the plan trains (the planner may add shallower exits to fit memory)' }),
    window_depth: Type.Integer({ description: 'layers of the deepest window (backpropagation depth)' }),
    micro_batch: Type.Integer(),
    gradient_accumulation_steps: Type.Integer(),
    prefix_cache: Type.Boolean({ description: "the frozen prefix's activations are cached across epochs" }),
    storage: Type.Array(Type.String(), { description: 'per layer weight storage: f32, int8 or int4' }),
    stored_dtype: Type.Optional(
      Type.Enum(['F32', 'F16', 'BF16'], {
        description:
          "dtype the base model's weights are stored in, as the forecast assumed: F16/BF16 weights stay at 2 bytes per parameter outside the TF.js heap, F32 weights are float32 tensors in it (absent in plans made before it was recorded)",
      }),
    ),
    device: Type.Object(
      {
        memory_budget_bytes: Type.Integer(),
        threads: Type.Integer(),
        backend: Type.String(),
        matmul_gflops: Type.Number({ description: 'measured SGEMM throughput the time forecast assumes' }),
        step_time_factor: Type.Number({
          description:
            "this machine's step time over the calibrated cost model's at that SGEMM throughput, measured on a reference training workload (by the worker when it measures its device, and again when the job starts); 1: not measured",
        }),
        tensor_heap_ceiling_bytes: Type.Optional(
          Nullable(
            Type.Integer({
              description:
                "the backend's hard limit on TF.js tensor memory (wasm: 4294901760); a plan whose TF.js peak exceeds it does not fit. Null: no such limit",
            }),
          ),
        ),
        source: Type.Enum(['worker', 'config', 'api_host'], {
          description:
            "where the fields the job did not state came from: `worker`: a live worker's report (`worker_id`, see GET /v1/workers); `config`: the EDGETUNE_DEVICE_* settings; `api_host`: no worker was live, so the API host's free memory and cores and a default throughput",
        }),
        worker_id: Nullable(Type.String()),
      },
      { description: 'the device planned for' },
    ),
    policy: Nullable(
      Type.Object({
        id: Nullable(Type.String()),
        source: Type.Enum(['stored', 'estimated', 'run'], {
          description:
            "`stored`: a stored policy's bits; `estimated`: from the budget, before a policy exists; `run`: the policy the job ran with",
        }),
      }),
    ),
    forecast: PlanForecast,
    time_budget: Type.Optional(
      Nullable(
        Type.Object(
          {
            seconds: Type.Number(),
            steps: Type.Integer({
              description: 'optimizer steps that fit in the budget at the forecast step time (in-loop evaluations not counted)',
            }),
            stops_run: Type.Boolean({ description: 'the budget ends training before its last step' }),
          },
          { description: "the job's time budget against the forecast (forecast.total_ms is bounded by it); null: no budget" },
        ),
      ),
    ),
    measured: Nullable(
      Type.Object(
        { peak_rss_bytes: Type.Integer(), peak_tf_bytes: Type.Integer(), step_ms: Type.Number() },
        { description: 'what the worker measured' },
      ),
    ),
    error: Nullable(
      Type.Object(
        { peak_rss_bytes: Nullable(Type.Number()), peak_tf_bytes: Nullable(Type.Number()), step_ms: Nullable(Type.Number()) },
        { description: 'forecast / measured - 1' },
      ),
    ),
    admission: Nullable(
      Type.Object(
        {
          fits: Type.Boolean(),
          peak_rss_bytes: Type.Integer(),
          step_ms: Type.Number(),
          total_ms: Type.Number(),
          memory_budget_bytes: Type.Integer(),
        },
        { description: "the API's forecast at creation, kept once the worker's plan replaces it" },
      ),
    ),
  },
  {
    $id: 'JobPlan',
    description: 'the execution plan (Edge-LLM hardware scheduling): choices, forecast, and after the run the measurements',
  },
);

export const HyperparametersInput = Type.Object(
  {
    n_epochs: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 100 }))),
    batch_size: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 256 }))),
    learning_rate_multiplier: Type.Optional(Auto(Type.Number({ exclusiveMinimum: 0, maximum: 100 }))),
    learning_rate: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'peak learning rate; overrides learning_rate_multiplier' }),
    ),
    max_steps: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_STEPS, description: 'optimizer steps in total; overrides n_epochs' })),
    gradient_accumulation_steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    warmup_steps: Type.Optional(Auto(Type.Integer({ minimum: 0, maximum: MAX_STEPS }))),
    lr_scheduler: Type.Optional(Type.Enum(['cosine', 'linear', 'constant'])),
    weight_decay: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    max_grad_norm: Type.Optional(Type.Number({ minimum: 0, maximum: 1000 })),
    lora_r: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    lora_alpha: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: MAX_LORA_ALPHA, description: 'LoRA scaling numerator (scaling = lora_alpha / lora_r)' }),
    ),
    lora_dropout: Type.Optional(Type.Number({ minimum: 0, maximum: 0.9 })),
    target_modules: Type.Optional(Type.Union([Type.Literal('all-linear'), Type.Array(Type.String(), { minItems: 1, maxItems: 7 })])),
    max_length: Type.Optional(Type.Integer({ minimum: 8, maximum: 32768, description: 'tokens per example after truncation' })),
    time_budget_s: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: MAX_TIME_BUDGET_S,
        description:
          'stop training once its wall time (steps and in-loop evaluations) reaches this many seconds (at most 7 days); with validation data the best-on-validation weights are kept',
      }),
    ),
    early_stopping: Type.Optional(
      Type.Object(
        {
          patience: Type.Integer({ minimum: 1, maximum: 1000, description: 'evaluations without an improvement before training stops' }),
          min_delta: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 1000,
              description: 'smallest change of the validation metric that counts as an improvement; default 0',
            }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'stop when the validation metric (voted accuracy for classification-like data, else loss) has not improved for `patience` evaluations; needs a validation_file (else 400 `validation_file_required`)',
        },
      ),
    ),
    eval_steps: Type.Optional(
      Auto(
        Type.Integer({
          minimum: 1,
          maximum: MAX_STEPS,
          description: `optimizer steps between in-loop validation evaluations; auto: max(1, round(total steps / ${AUTO_EVALUATIONS})) when early_stopping or time_budget_s is set and there is a validation_file, else none`,
        }),
      ),
    ),
  },
  { $id: 'HyperparametersInput', additionalProperties: false },
);

export const Metadata = Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 512 }), {
  maxProperties: 16,
  description: 'up to 16 string pairs',
});

export const JobCreate = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'a base model id from GET /v1/models' }),
    training_file: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }),
    validation_file: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }))),
    method: Type.Optional(ref(MethodInput)),
    hyperparameters: Type.Optional(ref(HyperparametersInput)),
    checkpointing: Type.Optional(
      Type.Object(
        {
          every_n_steps: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: MAX_STEPS }))),
          keep_after_finish: Type.Optional(
            Type.Boolean({
              description:
                'keep the checkpoints the job holds at its end (the latest EDGETUNE_CHECKPOINTS_KEPT and the best on validation); default false: they are deleted when the job ends',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2147483647 })),
    suffix: Type.Optional(Nullable(Type.String({ maxLength: 64, pattern: '^[A-Za-z0-9_.-]*$' }))),
    metadata: Type.Optional(Nullable(Metadata)),
    device: Type.Optional(Nullable(ref(DeviceInput))),
  },
  { $id: 'JobCreate', additionalProperties: false },
);

export const JobCreateQuery = Type.Object(
  {
    dry_run: Type.Optional(
      Type.Boolean({ description: 'plan the job and return the plan (200, object `job.plan`); nothing is created or queued' }),
    ),
  },
  { additionalProperties: false },
);

/** A resolved method: `edge_llm` present for the edge_llm types, `rag` for the rag types. */
const ResolvedMethod = Type.Object({
  type: Type.Enum(METHOD_TYPES, { description: methodTypeDoc }),
  edge_llm: Type.Optional(
    Type.Object({
      exit_layers: Type.Array(Type.Integer()),
      schedule: Type.String(),
      train_heads: Type.Boolean(),
      head_rank: Type.Integer(),
      prefix: Type.Optional(Type.String()),
      voting: Type.String(),
      compression: Nullable(ref(Compression)),
    }),
  ),
  rag: Type.Optional(Type.Object({ k: ragK(ragKDoc), context_share: ragShare(ragShareDoc) })),
});

export const JobErrorObject = Type.Object(
  { code: Type.String(), message: Type.String(), param: Nullable(Type.String()) },
  { $id: 'JobError' },
);

const PathMetrics = Type.Object(
  { accuracy: Nullable(Type.Number()), loss: Type.Number(), perplexity: Type.Number() },
  { additionalProperties: true },
);

export const JobResult = Type.Object(
  {
    voting_rule: Nullable(Type.String()),
    voted_accuracy: Nullable(Type.Number({ description: 'validation accuracy of the vote with the chosen rule' })),
    exits: Type.Array(
      Type.Object({ layer: Type.Integer(), accuracy: Nullable(Type.Number()), loss: Type.Number(), perplexity: Type.Number() }),
    ),
    voted: Type.Record(Type.String(), PathMetrics, { description: 'validation metrics of each voting rule' }),
    validation_examples: Type.Integer(),
    train_examples: Type.Integer(),
    steps: Type.Integer(),
    tokens: Type.Integer(),
    tokens_per_sec: Type.Number(),
    train_seconds: Type.Number(),
    final_loss: Nullable(Type.Number()),
    validation_curve: Type.Optional(
      Type.Array(
        Type.Object({
          step: Type.Integer(),
          elapsed_s: Type.Number({ description: 'tuning wall time at the evaluation, seconds' }),
          metric: Type.Enum(['accuracy', 'loss'], {
            description: 'what early stopping watched: voted accuracy for classification-like data, else voted loss (lower is better)',
          }),
          value: Type.Number(),
          accuracy: Nullable(Type.Number()),
          loss: Type.Number({ description: 'nats per completion token' }),
        }),
        { description: 'in-loop validation evaluations (empty: none ran)' },
      ),
    ),
    best_step: Type.Optional(
      Nullable(
        Type.Integer({ description: 'the step whose weights were kept (best on validation); null: no in-loop evaluation, the last' }),
      ),
    ),
    stopped_by: Type.Optional(Type.Enum(['max_steps', 'early_stopping', 'time_budget'], { description: 'what ended training' })),
    compression: Type.Optional(
      Nullable(
        Type.Object(
          {
            policy_id: Nullable(Type.String()),
            policy_reused: Type.Boolean({ description: 'the policy was stored before this job (no profiling)' }),
            stored_bytes: Type.Integer({ description: 'frozen linear weights as stored (packed)' }),
            dense_bytes: Type.Integer({ description: 'the same weights in float32' }),
            mean_sparsity: Type.Number(),
            mean_bits: Type.Number(),
          },
          { additionalProperties: true },
        ),
      ),
    ),
  },
  { $id: 'JobResult', description: "the engine's report: per-exit and voted validation metrics" },
);

export const Job = Type.Object(
  {
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
    method: ResolvedMethod,
    hyperparameters: Type.Object({
      n_epochs: Type.Integer(),
      batch_size: Type.Integer(),
      learning_rate_multiplier: Type.Number(),
      learning_rate: Type.Number(),
      max_steps: Nullable(Type.Integer()),
      gradient_accumulation_steps: Type.Integer(),
      warmup_steps: Type.Integer(),
      lr_scheduler: Type.String(),
      weight_decay: Type.Number(),
      max_grad_norm: Type.Number(),
      lora_r: Type.Integer(),
      lora_alpha: Type.Number(),
      lora_dropout: Type.Number(),
      target_modules: Type.Array(Type.String()),
      max_length: Type.Integer(),
      time_budget_s: Nullable(Type.Number({ description: 'null: no time budget' })),
      early_stopping: Nullable(Type.Object({ patience: Type.Integer(), min_delta: Type.Number() })),
      eval_steps: Nullable(Type.Integer({ description: 'optimizer steps between in-loop evaluations; null: none' })),
    }),
    checkpointing: Type.Object({ every_n_steps: Type.Integer(), keep_after_finish: Type.Boolean() }),
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
    device: Nullable(
      Type.Object(
        { memory_budget_bytes: Nullable(Type.Integer()), threads: Nullable(Type.Integer()) },
        { description: "the device the job asked for (null fields: the worker's own)" },
      ),
    ),
    plan: Nullable(ref(JobPlan)),
    policy_id: Nullable(Type.String({ description: 'the LUC policy the job used (GET /v1/policies/{id})' })),
    project_id: Type.String(),
  },
  { $id: 'Job' },
);
export const JobList = listOf(Job, 'JobList');

export const JobDryRun = Type.Object(
  {
    object: Type.Literal('job.plan'),
    model: Type.String(),
    training_file: Type.String(),
    validation_file: Nullable(Type.String()),
    training_records: Type.Integer(),
    total_steps: Type.Integer(),
    method: ResolvedMethod,
    hyperparameters: Type.Record(Type.String(), Type.Unknown(), { description: 'resolved, as the job would have them' }),
    device: Nullable(Type.Object({ memory_budget_bytes: Nullable(Type.Integer()), threads: Nullable(Type.Integer()) })),
    policy_id: Nullable(
      Type.String({
        description:
          'the stored policy the job would reuse (null: it would profile the model and store one): the policy of the budget for the ' +
          "model's weights as the API sees them (the fingerprint of its own copy of the model, else the one the workers reported)",
      }),
    ),
    plan: ref(JobPlan),
  },
  { $id: 'JobDryRun', description: 'what POST /v1/jobs?dry_run=true returns: the resolved job and its plan; nothing was created' },
);
export const JobEvent = Type.Object(
  {
    id: Type.String({ examples: ['evt_abc123'] }),
    object: Type.Literal('fine_tuning.job.event'),
    created_at: Type.Integer(),
    level: Type.String(),
    type: Type.String({ description: 'message | metrics | status' }),
    message: Type.String(),
    data: Nullable(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'JobEvent' },
);
export const JobEventList = listOf(JobEvent, 'JobEventList');

export const Checkpoint = Type.Object(
  {
    id: Type.String({ examples: ['ckpt_abc123'] }),
    object: Type.Literal('fine_tuning.job.checkpoint'),
    created_at: Type.Integer(),
    fine_tuning_job_id: Type.String(),
    step_number: Type.Integer(),
    metrics: Type.Record(Type.String(), Type.Unknown()),
    bytes: Type.Integer(),
    sha256: Type.String(),
  },
  { $id: 'Checkpoint' },
);
export const CheckpointList = listOf(Checkpoint, 'CheckpointList');

export const ModelObject = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('model'),
    created: Type.Integer(),
    owned_by: Type.String(),
    family: Type.Enum(['llama', 'mistral', 'qwen2'], { description: "the decoder family: config.json's model_type" }),
    n_params: Type.Integer({
      description:
        'parameters: the elements of the stored tensors (safetensors headers), else counted from config.json when no host had the weights',
    }),
    stored_dtype: Nullable(
      Type.String({
        description: 'safetensors dtype most weights are stored in (F32, BF16, F16, ...); null: no host reported readable weights',
        examples: ['BF16'],
      }),
    ),
    weight_bytes: Nullable(Type.Integer({ description: 'bytes of the stored tensors (headers excluded); null as for stored_dtype' })),
    hidden_size: Type.Integer(),
    vocab_size: Type.Integer(),
    limits: Type.Object({
      n_layers: Type.Integer(),
      max_lora_rank: Type.Integer(),
      max_length: Type.Integer(),
      target_modules: Type.Array(Type.String()),
      default_exit_layers: Type.Array(Type.Integer()),
    }),
    hosts: Type.Array(Type.String(), { description: 'hosts (API or workers) that have this model in their models folder' }),
    fingerprint: Nullable(
      Type.String({
        description:
          'content fingerprint (sha256 over config.json and the weight files) the most recent host with the weights reported; compression policies are kept per fingerprint',
      }),
    ),
  },
  { $id: 'Model' },
);
export const ModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(ref(ModelObject)) }, { $id: 'ModelList' });

export const WorkerObject = Type.Object(
  {
    id: Type.String({ description: "`host:pid`, as in a job's worker events" }),
    object: Type.Literal('worker'),
    host: Type.String(),
    online: Type.Boolean({
      description: 'heard from within the last 3 heartbeats (EDGETUNE_WORKER_HEARTBEAT_MS); only online workers are planned for',
    }),
    concurrency: Type.Integer({ description: 'jobs it runs at once' }),
    device: Type.Object({
      memory_budget_bytes: Type.Integer({
        description: "bytes a job may use: EDGETUNE_DEVICE_MEMORY_BYTES, else the host's free memory when the worker was last idle",
      }),
      total_memory_bytes: Type.Integer(),
      threads: Type.Integer(),
      backend: Type.String({ description: 'TF.js backend' }),
      matmul: Type.String({ description: 'what runs the matmuls, e.g. openblas(2 threads)' }),
      matmul_gflops: Type.Number({ description: 'measured SGEMM throughput, GFLOP/s' }),
      step_time_factor: Nullable(
        Type.Number({
          description:
            "measured step time of a reference training workload over the planner's forecast for it at matmul_gflops; the planner multiplies its step-time forecasts by it (null: not measured)",
        }),
      ),
      tensor_heap_ceiling_bytes: Nullable(
        Type.Integer({
          description: "the backend's hard limit on TF.js tensor memory (wasm: 4294901760), planned against; null: none (cpu, tensorflow)",
        }),
      ),
    }),
    started_at: Type.Integer(),
    heartbeat_at: Type.Integer(),
  },
  { $id: 'Worker', description: 'a worker process and the device it runs jobs on' },
);
export const WorkerList = Type.Object({ object: Type.Literal('list'), data: Type.Array(ref(WorkerObject)) }, { $id: 'WorkerList' });

export const PolicyObject = Type.Object(
  {
    id: Type.String({ examples: ['pol_abc123'] }),
    object: Type.Literal('policy'),
    created_at: Timestamp('creation time'),
    model: Type.String({ description: 'base model id' }),
    model_fingerprint: Nullable(
      Type.String({
        description:
          'content fingerprint of the model the policy was profiled on: sha256 over its config.json and weight files (as GET /v1/models reports it). ' +
          'A policy is reused only for the same model id, fingerprint and budget; null for policies stored before fingerprints existed (never reused)',
        examples: ['9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'],
      }),
    ),
    budget: ref(Compression),
    n_layers: Type.Integer(),
    sparsity: Type.Array(Type.Number(), { description: 'per decoder layer: fraction of its linear weights pruned' }),
    bits: Type.Array(Type.Integer(), { description: 'per decoder layer: weight bit-width (16 = not quantized)' }),
    mean_sparsity: Type.Number(),
    mean_bits: Type.Number(),
    sensitivity: Type.Object({
      prune: Type.Array(Nullable(Type.Number()), {
        description: 'per layer pruning sensitivity (mean normalised output MSE over the sparsity grid)',
      }),
      quant: Type.Array(Nullable(Type.Number()), { description: 'per layer quantization sensitivity (normalised output MSE at 4 bits)' }),
      profile: Nullable(
        Type.Record(Type.String(), Type.Unknown(), {
          description: 'the profile: grids, per-layer normalised MSE and loss change per grid point, dense loss',
        }),
      ),
    }),
    calibration: Nullable(
      Type.Object(
        {
          description: Type.String(),
          sequences: Type.Integer(),
          seq_len: Type.Integer(),
          tokens: Type.Integer(),
        },
        { description: 'the calibration data of the profile' },
      ),
    ),
    job_count: Type.Optional(Type.Integer({ description: 'jobs of this project that used the policy' })),
  },
  {
    $id: 'Policy',
    description:
      "A LUC policy: per-layer sparsity and bit-widths of a base model's weights for a budget, reused by every job with that model, the same weights (fingerprint) and budget",
  },
);
export const PolicyList = listOf(PolicyObject, 'PolicyList');

export const Project = Type.Object(
  { id: Type.String(), object: Type.Literal('project'), name: Type.String(), created_at: Type.Integer() },
  { $id: 'Project' },
);
export const ProjectList = listOf(Project, 'ProjectList');
export const ApiKey = Type.Object(
  {
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
  },
  { $id: 'ApiKey' },
);
export const ApiKeyList = listOf(ApiKey, 'ApiKeyList');

const Bits = Type.Object({ avg_bits: Type.Number(), target_sparsity: Type.Number() });
const RowRef = Type.Object(
  {
    study: Type.String(),
    task: Type.String(),
    n_train: Type.Integer(),
    seed: Type.Integer(),
    model: Type.String(),
    method: Type.String(),
  },
  { description: 'a guidelines bench row (bench/results/guidelines-<date>.json) a number rests on' },
);

export const RecommendationCreate = Type.Object(
  {
    training_file: Type.String({ minLength: 1 }),
    validation_file: Type.Optional(Nullable(Type.String({ minLength: 1, description: 'required by mode measure' }))),
    device: Type.Optional(
      Type.Union(
        [
          Type.Object(
            {
              memory_budget_bytes: Type.Optional(
                Type.Integer({ minimum: 1, maximum: MAX_MEMORY_BYTES, description: "bytes; default: the planning worker's" }),
              ),
              threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
            },
            { additionalProperties: false },
          ),
          Type.Object(
            { worker_id: Type.String({ minLength: 1, description: "advise for this live worker's profile (GET /v1/workers)" }) },
            { additionalProperties: false },
          ),
        ],
        { description: 'the device to advise for (default: as POST /v1/jobs plans: a live worker, else the configured device)' },
      ),
    ),
    time_budget_s: Type.Number({ exclusiveMinimum: 0, maximum: MAX_TIME_BUDGET_S, description: 'wall time the tuning may take, seconds' }),
    models: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        maxItems: 32,
        description: 'candidate base models; default: every installed one',
      }),
    ),
    mode: Type.Enum(['estimate', 'measure'], {
      description:
        'estimate: ranked at once from the fitted rules of the guidelines bench; measure: also probe jobs for the top candidates (needs validation_file), ranked by their measured validation metric once finished',
    }),
  },
  { $id: 'RecommendationCreate', additionalProperties: false },
);

export const RecommendationCandidate = Type.Object(
  {
    model: Type.String(),
    method: Type.Enum(METHOD_TYPES),
    compression: Nullable(Bits),
    lora_r: Nullable(Type.Integer()),
    steps: Type.Integer({ description: 'optimizer steps (0: rag trains nothing)' }),
    expected: Type.Object({
      metric: Type.Enum(['accuracy', 'exact_match']),
      value: Type.Number({ description: 'baseline + gain x (1 - baseline)' }),
      baseline: Type.Number({ description: 'majority-class share (classification), else 0' }),
      gain: Type.Number({
        description: 'fraction of the headroom above the baseline the method closed on the bench at this many examples',
      }),
      gain_sd: Type.Number({ description: 'its spread over seeds and tasks' }),
      task_kind: Type.Enum(['classification', 'generation', 'any'], { description: 'the bench rows read (any: both kinds pooled)' }),
      outside_measured: Type.Boolean({ description: 'the training set size lies outside the sizes measured: the nearest one was read' }),
    }),
    forecast: Type.Object({
      peak_rss_bytes: Type.Integer(),
      step_ms: Type.Number(),
      total_s: Type.Number(),
      memory_budget_bytes: Type.Integer(),
    }),
    job: Type.Object(
      {
        model: Type.String(),
        method: Type.Object({}, { additionalProperties: true }),
        hyperparameters: Type.Object({}, { additionalProperties: true }),
      },
      { description: 'the POST /v1/jobs fields of the candidate (POST /v1/recommendations/{id}/start creates it)' },
    ),
    guidelines: Type.Array(
      Type.Object({
        guideline: Type.Integer({ minimum: 1, maximum: 4 }),
        says: Type.String(),
        rows: Type.Array(RowRef),
      }),
      { description: 'the guidelines (Qin et al., arXiv 2406.03777) it follows, each with its bench rows' },
    ),
    rows: Type.Array(RowRef),
  },
  { $id: 'RecommendationCandidate' },
);

export const RecommendationObject = Type.Object(
  {
    id: Type.String({ examples: ['rec_abc123'] }),
    object: Type.Literal('recommendation'),
    created_at: Timestamp('creation time'),
    mode: Type.Enum(['estimate', 'measure']),
    status: Type.Enum(['measuring', 'succeeded', 'failed'], {
      description:
        'estimate: succeeded; measure: measuring until every probe job has finished, then succeeded (failed: no probe measured anything)',
    }),
    training_file: Type.String(),
    validation_file: Nullable(Type.String()),
    device: Nullable(Type.Object({}, { additionalProperties: true })),
    time_budget_s: Type.Number(),
    models: Type.Array(Type.String()),
    data: Type.Object({
      n_train: Type.Integer(),
      task_kind: Type.Enum(['classification', 'generation']),
      labels: Nullable(Type.Array(Type.String())),
      majority_share: Nullable(Type.Number()),
    }),
    rules_source: Type.String({ description: 'the bench result the rules were fitted to' }),
    best_candidate: Nullable(
      Type.Integer({ description: 'index of the best candidate: the best measured probe (measure, once finished), else 0' }),
    ),
    candidates: Type.Array(ref(RecommendationCandidate), { description: 'by expected metric, ties by forecast time' }),
    left_out: Type.Array(
      Type.Object({
        model: Type.String(),
        method: Type.Enum(METHOD_TYPES),
        compression: Nullable(Type.Object({ avg_bits: Type.Number(), target_sparsity: Type.Optional(Type.Number()) })),
        lora_r: Nullable(Type.Integer()),
        code: Type.Enum(['does_not_fit', 'over_time_budget', 'no_bench_rows']),
        reason: Type.String(),
      }),
    ),
    probes: Nullable(
      Type.Array(
        Type.Object({
          candidate: Type.Integer(),
          job_id: Nullable(Type.String()),
          status: Type.String({ description: "the probe job's status (failed when it could not be created)" }),
          measured: Nullable(Type.Object({ metric: Type.Enum(['accuracy', 'loss']), value: Type.Number() })),
          error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
        }),
        { description: 'measure: the probe jobs, best measured first once all have finished' },
      ),
    ),
  },
  { $id: 'Recommendation' },
);
export const RecommendationList = listOf(RecommendationObject, 'RecommendationList');
export const RecommendationStart = Type.Object(
  { candidate: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'index into candidates; default best_candidate' })) },
  { $id: 'RecommendationStart', additionalProperties: false },
);

const WebhookEvents = Type.Array(Type.Enum(WEBHOOK_EVENT_TYPES), {
  minItems: 1,
  uniqueItems: true,
  description: 'event types to receive: a job that succeeded, failed or was cancelled',
});
export const WebhookCreate = Type.Object(
  {
    url: Type.String({ format: 'uri', pattern: '^https?://', maxLength: 2048, description: 'http(s) URL the events are POSTed to' }),
    events: WebhookEvents,
  },
  { $id: 'WebhookCreate', additionalProperties: false },
);
const webhookProps = {
  id: Type.String({ examples: ['wh_abc123'] }),
  object: Type.Literal('webhook_endpoint'),
  url: Type.String(),
  events: WebhookEvents,
  created_at: Timestamp('creation time'),
};
export const WebhookObject = Type.Object(webhookProps, { $id: 'Webhook' });
export const WebhookCreated = Type.Object(
  {
    ...webhookProps,
    secret: Type.String({
      examples: ['whsec_tiz1lYjHZz9yA4jWVS5oMaUbIZ/Ljx6/LXkxWyXKrMA='],
      description: 'signing secret (Standard Webhooks `whsec_<base64>`): shown only in this answer',
    }),
  },
  { $id: 'WebhookCreated' },
);
export const WebhookList = listOf(WebhookObject, 'WebhookList');
export const DeletedWebhook = Type.Object(
  { id: Type.String(), object: Type.Literal('webhook_endpoint'), deleted: Type.Boolean() },
  { $id: 'DeletedWebhook' },
);
export const WebhookAttempt = Type.Object(
  {
    attempt: Type.Integer({ minimum: 1 }),
    status_code: Nullable(Type.Integer({ description: "the receiver's HTTP status (null: no answer)" })),
    error: Nullable(Type.String({ description: 'why the attempt failed: a non-2xx status, a timeout, a refused connection' })),
    started_at: Timestamp('when the request was sent'),
    duration_ms: Type.Integer(),
  },
  { $id: 'WebhookAttempt' },
);
export const WebhookDelivery = Type.Object(
  {
    id: Type.String({ examples: ['msg_abc123'], description: 'the `webhook-id` header of every attempt' }),
    object: Type.Literal('webhook_delivery'),
    webhook_id: Type.String(),
    event_type: Type.Enum(WEBHOOK_EVENT_TYPES),
    fine_tuning_job_id: Type.String(),
    status: Type.Enum(['pending', 'succeeded', 'failed'], {
      description: 'pending: not yet answered with a 2xx, more attempts to come; failed: every attempt failed',
    }),
    attempts: Type.Array(ref(WebhookAttempt)),
    next_retry_at: Nullable(Timestamp('when the next attempt is due')),
    created_at: Timestamp('when the event happened'),
    delivered_at: Nullable(Timestamp('when a 2xx answered')),
    payload: Type.Record(Type.String(), Type.Unknown(), { description: 'the JSON body sent' }),
  },
  { $id: 'WebhookDelivery' },
);
export const WebhookDeliveryList = listOf(WebhookDelivery, 'WebhookDeliveryList');

/** Every named schema, registered with app.addSchema in this order. */
// OpenAI-compatible serving of tuned models (docs/serving.md): OpenAI's request and response shapes, plus
// `labels` (label scoring) and `voting_rule` as extension fields.
const ServingParams = {
  model: Type.String({ description: "a fine-tuned model: a succeeded job's `fine_tuned_model` (`ft:<model>:<suffix>:<job id>`)" }),
  max_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, description: 'new tokens at most (default 16)' })),
  temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2, description: '0 = greedy; else sampled from p^(1/T) (default 1)' })),
  stop: Type.Optional(
    Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { maxItems: 4 })], {
      description: 'up to 4 sequences: the text ends before the first one generated',
    }),
  ),
  stream: Type.Optional(Type.Boolean({ description: 'answer as Server-Sent Events: `data: {chunk}` lines, then `data: [DONE]`' })),
  stream_options: Type.Optional(
    Type.Object(
      { include_usage: Type.Optional(Type.Boolean()) },
      { additionalProperties: false, description: 'include_usage: a last chunk with `usage`' },
    ),
  ),
  seed: Type.Optional(
    Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, description: 'sampling seed (temperature > 0)' }),
  ),
  n: Type.Optional(Type.Literal(1, { description: 'only 1 choice' })),
  user: Type.Optional(Type.String()),
  labels: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), {
      minItems: 2,
      maxItems: 64,
      uniqueItems: true,
      description:
        'edgetune extension, label scoring: the answer is the label whose first token the voted exits find most likely after the prompt ' +
        "(the labels must start with different tokens; write them as they follow the prompt, e.g. ' spam'); `label_probabilities` gives each label's voted probability",
    }),
  ),
  voting_rule: Type.Optional(
    Type.Union([Type.Literal('max'), Type.Literal('mean'), Type.Literal('confidence'), Type.Literal('weighted')], {
      description: "edgetune extension: the vote over the adapter's exits (default: the rule the job chose on its validation set)",
    }),
  ),
};
const Usage = Type.Object({ prompt_tokens: Type.Integer(), completion_tokens: Type.Integer(), total_tokens: Type.Integer() });
const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length')]);
const LabelProbabilities = Type.Optional(
  Type.Record(Type.String(), Type.Number(), {
    description: 'label scoring only: voted probability of each label, renormalised over the labels',
  }),
);

export const CompletionCreate = Type.Object(
  {
    ...ServingParams,
    prompt: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1 })], { description: 'the prompt (one)' }),
  },
  { $id: 'CompletionCreate', additionalProperties: false },
);
export const Completion = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('text_completion'),
    created: Timestamp('creation time'),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        text: Type.String(),
        logprobs: Type.Null(),
        finish_reason: FinishReason,
        label_probabilities: LabelProbabilities,
      }),
    ),
    usage: Usage,
  },
  { $id: 'Completion' },
);
const ChatContentPart = Type.Object({ type: Type.Literal('text'), text: Type.String() }, { additionalProperties: false });
export const ChatCompletionCreate = Type.Object(
  {
    ...ServingParams,
    messages: Type.Array(
      Type.Object(
        {
          role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant')]),
          content: Type.Union([Type.String(), Type.Array(ChatContentPart, { minItems: 1 })]),
          name: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    max_completion_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, description: 'new tokens at most (over max_tokens)' })),
  },
  { $id: 'ChatCompletionCreate', additionalProperties: false },
);
export const ChatCompletion = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Timestamp('creation time'),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        message: Type.Object({ role: Type.Literal('assistant'), content: Type.String(), refusal: Type.Null() }),
        logprobs: Type.Null(),
        finish_reason: FinishReason,
        label_probabilities: LabelProbabilities,
      }),
    ),
    usage: Usage,
  },
  { $id: 'ChatCompletion' },
);
export type CompletionCreateBody = Static<typeof CompletionCreate>;
export type ChatCompletionCreateBody = Static<typeof ChatCompletionCreate>;

export const NAMED_SCHEMAS: TSchema[] = [
  ProblemItem,
  Problem,
  FileObject,
  FileList,
  DeletedFile,
  DeletedJob,
  CompressionInput,
  Compression,
  MethodInput,
  HyperparametersInput,
  DeviceInput,
  JobCreate,
  JobErrorObject,
  JobResult,
  JobPlan,
  Job,
  JobList,
  JobDryRun,
  PolicyObject,
  PolicyList,
  JobEvent,
  JobEventList,
  Checkpoint,
  CheckpointList,
  ModelObject,
  ModelList,
  WorkerObject,
  WorkerList,
  Project,
  ProjectList,
  ApiKey,
  ApiKeyList,
  RecommendationCreate,
  RecommendationCandidate,
  RecommendationObject,
  RecommendationList,
  RecommendationStart,
  WebhookCreate,
  WebhookObject,
  WebhookCreated,
  WebhookList,
  DeletedWebhook,
  WebhookAttempt,
  WebhookDelivery,
  WebhookDeliveryList,
  CompletionCreate,
  Completion,
  ChatCompletionCreate,
  ChatCompletion,
];

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

/** Problem responses (application/problem+json) for the given statuses ([status, description] to word one for the route). */
export function problems(...statuses: (number | [number, string])[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const x of statuses) {
    const [s, description] = Array.isArray(x) ? x : [x, PROBLEM_DESCRIPTIONS[x] ?? 'Problem'];
    out[s] = { description, content: { 'application/problem+json': { schema: ref(Problem) } } } as unknown as TSchema;
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
export type JobDryRunObject = Static<typeof JobDryRun>;
export type PolicyObjectType = Static<typeof PolicyObject>;
export type RecommendationCreateBody = Static<typeof RecommendationCreate>;
export type RecommendationObjectType = Static<typeof RecommendationObject>;
export type WebhookCreateBody = Static<typeof WebhookCreate>;
