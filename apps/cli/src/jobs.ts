/** `edgetune jobs create|plan|list|get|cancel`: fine-tuning jobs (`/v1/jobs`). */
import { readFileSync } from 'node:fs';
import { need, numOpt, UsageError, type Flags } from '@edgetune/core';
import { ok, type Job, type JobCreate, type JobDryRun } from '@edgetune/client';
import type { Command, Context } from './args.js';
import { bytes, duration, percent, summary, table, time } from './format.js';

const METHODS = ['edge_llm', 'lora', 'rag', 'rag_edge_llm', 'rag_lora'] as const;
const STATUSES = ['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelling', 'cancelled'] as const;

/** Options of `jobs create` and `jobs plan`: the request body's common fields (`--body FILE` gives any of them). */
const JOB_OPTIONS = {
  body: { type: 'string' },
  model: { type: 'string' },
  'training-file': { type: 'string' },
  'validation-file': { type: 'string' },
  method: { type: 'string' },
  'exit-layers': { type: 'string' },
  'n-epochs': { type: 'string' },
  'max-steps': { type: 'string' },
  'batch-size': { type: 'string' },
  'learning-rate': { type: 'string' },
  'max-length': { type: 'string' },
  'lora-r': { type: 'string' },
  'time-budget-s': { type: 'string' },
  seed: { type: 'string' },
  suffix: { type: 'string' },
  'memory-budget-mb': { type: 'string' },
  threads: { type: 'string' },
} as const;
const JOB_USAGE =
  '--model ID --training-file FILE_ID [--validation-file FILE_ID --method edge_llm|lora|rag|rag_edge_llm|rag_lora --exit-layers auto|1,3\n' +
  '      --max-steps N --n-epochs N --batch-size N --learning-rate X --max-length N --lora-r N --time-budget-s S --seed N --suffix S\n' +
  '      --memory-budget-mb M --threads N --body FILE]  (--body: a JSON request body; the options override its fields)';

/** The POST /v1/jobs body from `--body FILE` and the options. @throws UsageError for a bad file, value or missing field */
export function jobBody(v: Flags): JobCreate {
  let base: Partial<JobCreate> = {};
  if (typeof v.body === 'string') {
    try {
      base = JSON.parse(readFileSync(v.body, 'utf8'));
    } catch (e) {
      throw new UsageError(`--body ${v.body}: ${(e as Error).message}`);
    }
    if (!base || typeof base !== 'object' || Array.isArray(base)) throw new UsageError(`--body ${v.body}: not a JSON object`);
  }
  const int = (k: string) => (v[k] === undefined ? undefined : numOpt(v, k, 0));
  const hp: Record<string, unknown> = { ...base.hyperparameters };
  for (const [flag, field] of [
    ['n-epochs', 'n_epochs'],
    ['max-steps', 'max_steps'],
    ['batch-size', 'batch_size'],
    ['learning-rate', 'learning_rate'],
    ['max-length', 'max_length'],
    ['lora-r', 'lora_r'],
    ['time-budget-s', 'time_budget_s'],
  ] as const)
    if (v[flag] !== undefined) hp[field] = int(flag);
  const method: Record<string, unknown> = { ...base.method };
  if (v.method !== undefined) {
    if (!METHODS.includes(v.method as (typeof METHODS)[number])) throw new UsageError(`--method must be one of ${METHODS.join(', ')}`);
    method.type = v.method;
  }
  if (v['exit-layers'] !== undefined) {
    const s = v['exit-layers'] as string;
    const layers = s === 'auto' ? 'auto' : s.split(',').map((x) => Number(x.trim()));
    if (Array.isArray(layers) && layers.some((n) => !Number.isInteger(n)))
      throw new UsageError(`--exit-layers must be auto or like 1,3,5, got ${JSON.stringify(s)}`);
    method.type ??= 'edge_llm';
    method.edge_llm = { ...(method.edge_llm as object), exit_layers: layers };
  }
  const device: Record<string, unknown> = { ...base.device };
  if (v['memory-budget-mb'] !== undefined) device.memory_budget_bytes = Math.round(numOpt(v, 'memory-budget-mb', 0) * 2 ** 20);
  if (v.threads !== undefined) device.threads = int('threads');
  const body = {
    ...base,
    ...(v.model !== undefined ? { model: v.model } : {}),
    ...(v['training-file'] !== undefined ? { training_file: v['training-file'] } : {}),
    ...(v['validation-file'] !== undefined ? { validation_file: v['validation-file'] } : {}),
    ...(Object.keys(method).length ? { method } : {}),
    ...(Object.keys(hp).length ? { hyperparameters: hp } : {}),
    ...(Object.keys(device).length ? { device } : {}),
    ...(v.seed !== undefined ? { seed: int('seed') } : {}),
    ...(v.suffix !== undefined ? { suffix: v.suffix } : {}),
  } as JobCreate;
  if (!body.model) need(v, 'model');
  if (!body.training_file) need(v, 'training-file');
  return body;
}

/** A job as `key: value` lines: status, progress, latest loss, error or result. */
export function jobSummary(j: Job): string {
  const m = (j.latest_metrics ?? {}) as Record<string, number | undefined>;
  const p = j.progress;
  const prog = p.total_steps
    ? `${p.step}/${p.total_steps} steps (${p.percent.toFixed(1)}%)${p.eta_seconds !== null && j.status === 'running' ? `, ETA ${duration(p.eta_seconds * 1000)}` : ''}`
    : null;
  const r = j.result;
  return summary([
    ['id', j.id],
    ['status', j.status],
    ['model', j.model],
    ['method', j.method.type],
    ['training file', j.training_file],
    ['validation file', j.validation_file],
    ['created', time(j.created_at)],
    ['started', j.started_at ? time(j.started_at) : null],
    ['finished', j.finished_at ? time(j.finished_at) : null],
    ['progress', prog],
    ['loss', typeof m.train_loss === 'number' ? m.train_loss.toFixed(4) : null],
    ['tokens/s', typeof m.tokens_per_sec === 'number' ? m.tokens_per_sec : null],
    ['error', j.error ? `${j.error.code}: ${j.error.message}` : null],
    [
      'voted accuracy',
      r?.voted_accuracy !== undefined && r?.voted_accuracy !== null ? `${percent(r.voted_accuracy)} (${r.voting_rule})` : null,
    ],
    ['exits', r ? r.exits.map((e) => `${e.layer}: ${percent(e.accuracy)}`).join(', ') : null],
    ['fine-tuned model', j.fine_tuned_model],
  ]);
}

/** The dry-run plan for people: fit, memory forecast against the budget, time, exits and window. */
export function planSummary(d: JobDryRun): string {
  const p = d.plan;
  const f = p.forecast;
  const budget = p.device.memory_budget_bytes;
  const share = budget ? ` (${percent(f.peak_rss_bytes / budget)} of it)` : '';
  return summary([
    ['model', `${d.model}, method ${d.method.type}`],
    ['training', `${d.training_records} records, ${d.total_steps} steps`],
    ['fits', p.fits ? 'yes' : `NO: ${p.reason ?? 'over the device budget'}`],
    ['memory', `peak RSS ${bytes(f.peak_rss_bytes)} of a ${bytes(budget)} budget${share}`],
    [
      '  parts',
      `weights ${bytes(f.weight_bytes)}, trainable ${bytes(f.trainable_bytes)}, activations ${bytes(f.activation_bytes)}, prefix cache ${bytes(f.prefix_cache_bytes)}; TF.js peak ${bytes(f.peak_tf_bytes)}`,
    ],
    [
      'time',
      `${f.step_ms.toFixed(0)} ms/step, ${duration(f.total_ms)} in all (${p.device.matmul_gflops.toFixed(1)} GFLOP/s SGEMM, ${p.device.backend}, ${p.device.threads} threads)`,
    ],
    ['device', `from ${p.device.source}${p.device.worker_id ? ` (${p.device.worker_id})` : ''}`],
    ['exits', p.exit_layers.length ? p.exit_layers.join(', ') : '-'],
    [
      'window',
      `${p.window_depth} layer${p.window_depth === 1 ? '' : 's'} deep; micro-batch ${p.micro_batch} x ${p.gradient_accumulation_steps} accumulation; prefix cache ${p.prefix_cache ? 'on' : 'off'}`,
    ],
    ['policy', d.policy_id ? `reuses ${d.policy_id}` : p.policy ? p.policy.source : null],
  ]);
}

const show = (ctx: Context, j: Job) => ctx.print(ctx.json ? JSON.stringify(j) : jobSummary(j));

/** The jobs commands (`watch` is in watch.ts). */
export const JOB_COMMANDS: Command[] = [
  {
    group: 'jobs',
    name: 'create',
    args: [],
    options: { ...JOB_OPTIONS, quiet: { type: 'boolean', short: 'q' } },
    usage: `${JOB_USAGE} [-q]`,
    summary: 'create a fine-tuning job (-q prints its id alone)',
    async run(ctx, v) {
      const j = (await ok(ctx.client.POST('/v1/jobs', { body: jobBody(v) }))) as Job;
      if (v.quiet && !ctx.json) return ctx.print(j.id);
      show(ctx, j);
    },
  },
  {
    group: 'jobs',
    name: 'plan',
    args: [],
    options: JOB_OPTIONS,
    usage: JOB_USAGE,
    summary: "the job's plan without creating it (POST /v1/jobs?dry_run=true): memory forecast vs budget, time, exits",
    async run(ctx, v) {
      const d = (await ok(ctx.client.POST('/v1/jobs', { body: jobBody(v), params: { query: { dry_run: true } } }))) as JobDryRun;
      ctx.print(ctx.json ? JSON.stringify(d) : planSummary(d));
    },
  },
  {
    group: 'jobs',
    name: 'list',
    args: [],
    options: { limit: { type: 'string' }, after: { type: 'string' }, status: { type: 'string' }, model: { type: 'string' } },
    usage: '[--limit 20 --after JOB_ID --status STATUS --model ID]',
    summary: 'jobs, newest first',
    async run(ctx, v) {
      if (v.status !== undefined && !STATUSES.includes(v.status as Job['status']))
        throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
      const query = {
        ...(v.limit !== undefined ? { limit: numOpt(v, 'limit', 20) } : {}),
        ...(v.after !== undefined ? { after: v.after as string } : {}),
        ...(v.status !== undefined ? { status: v.status as Job['status'] } : {}),
        ...(v.model !== undefined ? { model: v.model as string } : {}),
      };
      const list = await ok(ctx.client.GET('/v1/jobs', { params: { query } }));
      if (ctx.json) return ctx.print(JSON.stringify(list));
      const rows = list.data.map((j) => [
        j.id,
        j.status,
        j.model,
        j.method.type,
        j.progress.total_steps ? `${j.progress.step}/${j.progress.total_steps}` : '-',
        time(j.created_at),
      ]);
      ctx.print(table(['ID', 'STATUS', 'MODEL', 'METHOD', 'STEPS', 'CREATED (UTC)'], rows));
      if (list.has_more) ctx.print(`more: --after ${list.last_id}`);
    },
  },
  {
    group: 'jobs',
    name: 'get',
    args: ['JOB_ID'],
    options: {},
    usage: 'JOB_ID',
    summary: "a job's status, progress, error or result",
    async run(ctx, _v, [id]) {
      show(ctx, await ok(ctx.client.GET('/v1/jobs/{id}', { params: { path: { id: id! } } })));
    },
  },
  {
    group: 'jobs',
    name: 'cancel',
    args: ['JOB_ID'],
    options: {},
    usage: 'JOB_ID',
    summary: 'cancel a job (a running one stops within seconds)',
    async run(ctx, _v, [id]) {
      const j = await ok(ctx.client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: id! } } }));
      ctx.print(ctx.json ? JSON.stringify(j) : `${j.id}: ${j.status}`);
    },
  },
];
