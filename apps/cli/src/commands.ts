/** `edgetune files|adapters|models|workers|keys ...`: the resources around a job. */
import { createWriteStream, openAsBlob, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { need, numOpt, pick, UsageError } from '@edgetune/core';
import { ok } from '@edgetune/client';
import type { Command } from './args.js';
import { bytes, summary, table, time } from './format.js';

export const RESOURCE_COMMANDS: Command[] = [
  {
    group: 'files',
    name: 'upload',
    args: ['FILE'],
    options: { purpose: { type: 'string' }, quiet: { type: 'boolean', short: 'q' } },
    usage: 'FILE [--purpose fine-tune] [-q]',
    summary: 'upload a JSONL training or validation file (-q prints its id alone)',
    async run(ctx, v, [path]) {
      let size: number;
      try {
        size = statSync(path!).size;
      } catch {
        throw new UsageError(`cannot read ${path}`);
      }
      const f = await ctx.client.uploadFile(
        await openAsBlob(path!),
        basename(path!),
        pick(v, 'purpose', ['fine-tune'] as const, 'fine-tune'),
      );
      if (ctx.json) return ctx.print(JSON.stringify(f));
      if (v.quiet) return ctx.print(f.id);
      ctx.print(`${f.id}  ${f.filename}  ${f.records} records, ${bytes(size)}`);
    },
  },
  {
    group: 'files',
    name: 'list',
    args: [],
    options: { limit: { type: 'string' }, after: { type: 'string' } },
    usage: '[--limit 20 --after FILE_ID]',
    summary: 'uploaded files, newest first',
    async run(ctx, v) {
      const query = {
        ...(v.limit !== undefined ? { limit: numOpt(v, 'limit', 20) } : {}),
        ...(v.after !== undefined ? { after: v.after as string } : {}),
      };
      const list = await ok(ctx.client.GET('/v1/files', { params: { query } }));
      if (ctx.json) return ctx.print(JSON.stringify(list));
      const rows = list.data.map((f) => [f.id, f.filename, f.records, bytes(f.bytes), time(f.created_at)]);
      ctx.print(table(['ID', 'FILENAME', 'RECORDS', 'SIZE', 'CREATED (UTC)'], rows));
      if (list.has_more) ctx.print(`more: --after ${list.last_id}`);
    },
  },
  {
    group: 'adapters',
    name: 'download',
    args: ['JOB_ID'],
    options: { format: { type: 'string' }, out: { type: 'string', short: 'o' } },
    usage: 'JOB_ID [--format peft|bundle] [--out FILE]',
    summary: "a succeeded job's voted adapter as a tar file (bundle: PEFT + exits, policy, voting, manifest)",
    async run(ctx, v, [id]) {
      const format = pick(v, 'format', ['peft', 'bundle'] as const, 'peft');
      const dl = await ctx.client.downloadAdapter(id!, { format });
      const out = (v.out as string | undefined) ?? dl.filename ?? `${id}-${format}.tar`;
      await pipeline(Readable.fromWeb(dl.body as import('node:stream/web').ReadableStream), createWriteStream(out));
      const size = statSync(out).size;
      ctx.print(ctx.json ? JSON.stringify({ job_id: id, format, file: out, bytes: size }) : `wrote ${out} (${bytes(size)})`);
    },
  },
  {
    group: 'models',
    name: 'list',
    args: [],
    options: {},
    usage: '',
    summary: 'base models the API and the workers have',
    async run(ctx) {
      const list = await ok(ctx.client.GET('/v1/models'));
      if (ctx.json) return ctx.print(JSON.stringify(list));
      const rows = list.data.map((m) => [
        m.id,
        m.family,
        `${(m.n_params / 1e6).toFixed(1)}M`,
        m.limits.n_layers,
        m.stored_dtype,
        bytes(m.weight_bytes),
        m.hosts.join(','),
      ]);
      ctx.print(table(['ID', 'FAMILY', 'PARAMS', 'LAYERS', 'DTYPE', 'WEIGHTS', 'HOSTS'], rows));
    },
  },
  {
    group: 'workers',
    name: 'list',
    args: [],
    options: {},
    usage: '',
    summary: 'workers and the devices they reported',
    async run(ctx) {
      const list = await ok(ctx.client.GET('/v1/workers'));
      if (ctx.json) return ctx.print(JSON.stringify(list));
      const rows = list.data.map((w) => [
        w.id,
        w.online ? 'yes' : 'no',
        w.device.backend,
        w.device.threads,
        bytes(w.device.memory_budget_bytes),
        w.device.matmul_gflops.toFixed(1),
        w.concurrency,
        time(w.heartbeat_at),
      ]);
      ctx.print(table(['ID', 'ONLINE', 'BACKEND', 'THREADS', 'MEMORY BUDGET', 'GFLOP/S', 'JOBS', 'HEARTBEAT (UTC)'], rows));
    },
  },
  {
    group: 'keys',
    name: 'create',
    args: [],
    options: { name: { type: 'string' }, project: { type: 'string' }, admin: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' } },
    usage: '--name NAME [--project ID|NAME (default: default)] [--admin] [-q]',
    summary: 'create an API key (needs an admin key; the secret is shown once; -q prints it alone)',
    async run(ctx, v) {
      const name = need(v, 'name');
      const ref = (v.project as string | undefined) ?? 'default';
      const projectId = ref.startsWith('proj_') ? ref : await projectIdByName(ctx, ref);
      const k = await ok(
        ctx.client.POST('/v1/projects/{id}/keys', { params: { path: { id: projectId } }, body: { name, admin: v.admin === true } }),
      );
      if (ctx.json) return ctx.print(JSON.stringify(k));
      if (v.quiet) return ctx.print(k.secret ?? '');
      ctx.print(
        summary([
          ['id', k.id],
          ['project', k.project_id],
          ['name', k.name],
          ['admin', k.admin ? 'yes' : 'no'],
          ['secret', `${k.secret}   (shown once: store it now)`],
        ]),
      );
    },
  },
];

/** The id of the project named `name` (admin keys list projects). @throws UsageError when none has that name */
async function projectIdByName(ctx: Parameters<Command['run']>[0], name: string): Promise<string> {
  let after: string | undefined;
  for (;;) {
    const page = await ok(ctx.client.GET('/v1/projects', { params: { query: { limit: 100, ...(after ? { after } : {}) } } }));
    const p = page.data.find((x) => x.name === name);
    if (p) return p.id;
    if (!page.has_more || !page.last_id) throw new UsageError(`no project named ${JSON.stringify(name)}`);
    after = page.last_id;
  }
}
