/** `/v1/jobs`: create, list, get, cancel, events (JSON + SSE), checkpoints, adapter download. */
import { Readable } from 'node:stream';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../app.js';
import { ApiError } from '../errors.js';
import { authOf } from '../auth.js';
import { idempotencyKeyOf, idempotencyOptions, idempotent, requestHash } from '../idempotency.js';
import { cancelJob, createJob, dryRunJob, findJob, renderJob } from '../jobs.js';

import { isTerminal, JOB_STATUSES } from '@edgetune/core';
import { readBlob } from '@edgetune/store';
import { checkpointObject, eventObject, listPage } from '../serialize.js';
import { CheckpointList, IdParams, Job, JobCreate, JobCreateQuery, JobDryRun, JobEventList, JobList, ListQuery, listQuery, problems, ref } from '../schemas.js';

/** Adapter download formats. */
export const ADAPTER_FORMATS = ['peft', 'bundle'] as const;

/** Parses a single `bytes=` range against `size`. null: serve the whole body; 'unsatisfiable': 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // malformed or multi-range: ignored (RFC 9110 §14.2)
  let start: number, end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

const jobs: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { db, hub } = deps;
  const jd = { db, redis: deps.redis, queue: deps.queue, prefix: deps.config.queuePrefix, config: deps.config };
  const idem = idempotencyOptions(deps.config);

  app.post('/v1/jobs', {
    schema: {
      operationId: 'createJob', summary: 'Create a tuning job (or plan one: ?dry_run=true)', tags: ['jobs'],
      description: 'Creates an Edge-LLM adaptive layer tuning job on a base model, optionally compressed first (`method.edge_llm.compression`, LUC). '
        + '"auto" values are resolved and echoed back. The job is planned for its `device` (default: the worker\'s own memory and cores): '
        + 'micro-batch, gradient accumulation, exit windows, prefix caching, with a memory and time forecast (`plan`); a job whose plan cannot fit '
        + 'its memory budget is refused with 422 `plan_does_not_fit` (the plan in the problem) before anything is created. '
        + '`?dry_run=true` returns the plan (200, object `job.plan`, also when it does not fit) and creates nothing. Supports Idempotency-Key: a retry that takes over the key of a request whose API process died '
        + 'answers the job that request created (accepting it if it had not been queued yet) rather than creating a second one.',
      querystring: JobCreateQuery,
      body: ref(JobCreate),
      response: {
        200: ref(JobDryRun), 201: ref(Job),
        ...problems(400, 401, 409, [422, 'The job does not fit its memory budget (`plan_does_not_fit`; the forecast is in `plan`)'], 503),
      },
    },
  }, async (req, reply) => {
    const { projectId } = authOf(req);
    if (req.query.dry_run) return reply.code(200).send(await dryRunJob(jd, projectId, req.body));
    return idempotent(db, req, reply, requestHash(req.body), async () => ({ status: 201, body: await createJob(jd, projectId, req.body, idempotencyKeyOf(req)) }), idem);
  });

  app.get('/v1/jobs', {
    schema: {
      operationId: 'listJobs', summary: 'List jobs (newest first)', tags: ['jobs'],
      description: 'Filters: `status`, `model`, and `metadata[key]=value` (any number, all must match).',
      querystring: listQuery({
        status: Type.Optional(Type.Enum(JOB_STATUSES)),
        model: Type.Optional(Type.String()),
      }, { patternProperties: { '^metadata\\[.+\\]$': Type.String() } }),
      response: { 200: ref(JobList), ...problems(400, 401) },
    },
  }, async (req) => {
    const { projectId } = authOf(req);
    const q = req.query as Record<string, string | number | undefined> & typeof req.query;
    const limit = q.limit ?? 20;
    let before: bigint | undefined;
    if (q.after) {
      const a = await db.job.findFirst({ where: { id: q.after, projectId }, select: { seq: true } });
      if (!a) throw new ApiError(400, 'invalid_cursor', `after: no job ${q.after}`, { param: 'after' });
      before = a.seq;
    }
    const meta = Object.entries(q).flatMap(([k, v]) => {
      const m = /^metadata\[(.+)\]$/.exec(k);
      return m ? [{ metadata: { path: [m[1]], equals: String(v) } }] : [];
    });
    const rows = await db.job.findMany({
      where: {
        projectId,
        ...(q.status ? { status: q.status } : {}),
        ...(q.model ? { model: q.model } : {}),
        ...(before !== undefined ? { seq: { lt: before } } : {}),
        ...(meta.length ? { AND: meta } : {}),
      },
      orderBy: { seq: 'desc' }, take: limit + 1,
    });
    const data = await Promise.all(rows.map((r) => renderJob(db, r)));
    return listPage(data, limit);
  });

  app.get('/v1/jobs/:id', {
    schema: { operationId: 'getJob', summary: 'Get a job (status, progress, ETA, latest metrics, result, error)', tags: ['jobs'], params: IdParams, response: { 200: ref(Job), ...problems(401, 404) } },
  }, async (req) => renderJob(db, await findJob(db, authOf(req).projectId, req.params.id)));

  app.post('/v1/jobs/:id/cancel', {
    schema: {
      operationId: 'cancelJob', summary: 'Cancel a job', tags: ['jobs'], params: IdParams,
      description: 'A queued job is cancelled at once; a running job goes to `cancelling` and reaches `cancelled` within seconds. 409 for finished jobs. Supports Idempotency-Key.',
      response: { 200: ref(Job), ...problems(401, 404, 409) },
    },
  }, async (req, reply) => {
    const { projectId } = authOf(req);
    return idempotent(db, req, reply, requestHash({ cancel: req.params.id }), async () => ({ status: 200, body: await cancelJob(jd, projectId, req.params.id) }), idem);
  });

  const eventsAfter = async (jobId: string, after: string | undefined, param: string): Promise<bigint> => {
    if (!after) return -1n;
    const e = await db.jobEvent.findFirst({ where: { id: after, jobId }, select: { seq: true } });
    if (!e) throw new ApiError(400, 'invalid_cursor', `${param}: no event ${after} in this job`, { param });
    return e.seq;
  };

  app.get('/v1/jobs/:id/events', {
    schema: {
      operationId: 'listJobEvents', summary: 'List job events (oldest first)', tags: ['jobs'], params: IdParams,
      description: 'Pages forward in time: pass the last id of a page as `after` to get the next. Types: `status`, `message`, `metrics` (one per training step).',
      querystring: Type.Object({ after: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) }, { additionalProperties: false }),
      response: { 200: ref(JobEventList), ...problems(400, 401, 404) },
    },
  }, async (req) => {
    const j = await findJob(db, authOf(req).projectId, req.params.id);
    const limit = req.query.limit ?? 100;
    const from = await eventsAfter(j.id, req.query.after, 'after');
    const rows = await db.jobEvent.findMany({ where: { jobId: j.id, seq: { gt: from } }, orderBy: { seq: 'asc' }, take: limit + 1 });
    return listPage(rows.map(eventObject), limit);
  });

  app.get('/v1/jobs/:id/events/stream', {
    schema: {
      operationId: 'streamJobEvents', summary: 'Stream job events (Server-Sent Events)', tags: ['jobs'], params: IdParams,
      description: 'text/event-stream of the same events: `id` is the event id, `event` its type, `data` the event object. '
        + 'Reconnect with `Last-Event-ID` (or `?after=`) to continue without gaps. Ends with an `end` event once the job is finished.',
      querystring: Type.Object({ after: Type.Optional(Type.String()) }, { additionalProperties: false }),
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String()) }),
      response: { 200: { description: 'event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...problems(400, 401, 404) },
    },
  }, async (req, reply) => {
    const j = await findJob(db, authOf(req).projectId, req.params.id);
    const lastId = req.headers['last-event-id'] || req.query.after;
    let seq = await eventsAfter(j.id, lastId, req.headers['last-event-id'] ? 'Last-Event-ID' : 'after');
    await hub.start();
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    let closed = false, busy = false, again = false;
    // The worker flips the status before it writes its last events, so a terminal status alone does not
    // mean the stream has everything: end after the terminal `status` event, or 5 s after the flip.
    let sentTerminalEvent = false, terminalSince = 0;
    let poll: NodeJS.Timeout | undefined, ping: NodeJS.Timeout | undefined;
    const finish = () => {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      clearInterval(ping);
      unlisten();
      deps.streams.delete(finish);
      res.end();
    };
    const pump = async (): Promise<void> => {
      if (closed) return;
      if (busy) { again = true; return; }
      busy = true;
      try {
        do {
          again = false;
          const status = (await db.job.findUnique({ where: { id: j.id }, select: { status: true } }))?.status;
          for (;;) {
            const rows = await db.jobEvent.findMany({ where: { jobId: j.id, seq: { gt: seq } }, orderBy: { seq: 'asc' }, take: 500 });
            for (const e of rows) {
              res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(eventObject(e))}\n\n`);
              seq = e.seq;
              const st = (e.data as { status?: string } | null)?.status;
              if (e.type === 'status' && st && isTerminal(st as Parameters<typeof isTerminal>[0])) sentTerminalEvent = true;
            }
            if (rows.length < 500) break;
          }
          if (status && isTerminal(status) && !sentTerminalEvent) {
            terminalSince ||= Date.now();
            if (Date.now() - terminalSince < 5000) continue;
          }
          if (!status || isTerminal(status)) {
            res.write(`event: end\ndata: ${JSON.stringify({ status: status ?? null })}\n\n`);
            finish();
            return;
          }
        } while (again && !closed);
      } catch (err) {
        req.log.warn({ err }, 'event stream failed');
        finish();
      } finally {
        busy = false;
      }
    };
    const unlisten = hub.listen(j.id, () => void pump());
    deps.streams.add(finish);
    poll = setInterval(() => void pump(), 2000);
    ping = setInterval(() => { if (!closed) res.write(': ping\n\n'); }, 15_000);
    res.on('close', finish);
    await pump();
  });

  app.get('/v1/jobs/:id/checkpoints', {
    schema: {
      operationId: 'listJobCheckpoints', summary: 'List checkpoints (newest first)', tags: ['jobs'], params: IdParams,
      querystring: ListQuery, response: { 200: ref(CheckpointList), ...problems(400, 401, 404) },
    },
  }, async (req) => {
    const j = await findJob(db, authOf(req).projectId, req.params.id);
    const limit = req.query.limit ?? 20;
    let below: number | undefined;
    if (req.query.after) {
      const c = await db.checkpoint.findFirst({ where: { id: req.query.after, jobId: j.id }, select: { step: true } });
      if (!c) throw new ApiError(400, 'invalid_cursor', `after: no checkpoint ${req.query.after} in this job`, { param: 'after' });
      below = c.step;
    }
    const rows = await db.checkpoint.findMany({
      where: { jobId: j.id, ...(below !== undefined ? { step: { lt: below } } : {}) },
      orderBy: { step: 'desc' }, take: limit + 1, include: { blob: { select: { size: true, sha256: true } } },
    });
    return listPage(rows.map(checkpointObject), limit);
  });

  app.get('/v1/jobs/:id/adapter', {
    schema: {
      operationId: 'downloadJobAdapter', summary: 'Download the tuned adapter', tags: ['jobs'], params: IdParams,
      description: '`peft`: a tar with `adapter_config.json` + `adapter_model.safetensors` (Hugging Face PEFT; the deepest exit\'s path). '
        + '`bundle`: a tar with the PEFT files, `edge_llm.json` + `edge_llm.safetensors` (all windows\' LoRA, exit layers, exit heads, voting rule), '
        + '`metrics.json` and `manifest.json` (sha256 of every file); a compressed job adds `compressed_model.safetensors` (packed pruned and quantized base weights) '
        + 'and `policy.json` (its LUC policy). Headers: `ETag`, `X-Content-SHA256` (hex), `Repr-Digest`. Supports `Range` (single range).',
      querystring: Type.Object({ format: Type.Optional(Type.Enum(ADAPTER_FORMATS, { default: 'peft' })) }, { additionalProperties: false }),
      headers: Type.Object({ range: Type.Optional(Type.String()), 'if-range': Type.Optional(Type.String()) }),
      response: {
        200: { description: 'the whole archive', content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
        206: { description: 'the requested byte range', content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
        ...problems(400, 401, 404, 409, 416),
      },
    },
  }, async (req, reply) => {
    const j = await findJob(db, authOf(req).projectId, req.params.id);
    const format = req.query.format ?? 'peft';
    const a = await db.adapter.findUnique({ where: { jobId_format: { jobId: j.id, format } } });
    if (!a) throw new ApiError(409, 'adapter_not_ready', `Job ${j.id} is ${j.status}; its adapter is available once it has succeeded`, { param: 'id' });
    const size = Number(a.size);
    const etag = `"sha256-${a.sha256}"`;
    reply.header('accept-ranges', 'bytes').header('etag', etag).header('x-content-sha256', a.sha256)
      .header('repr-digest', `sha-256=:${Buffer.from(a.sha256, 'hex').toString('base64')}:`)
      .header('content-type', 'application/x-tar')
      .header('content-disposition', `attachment; filename="${j.id}-${format}.tar"`);
    const ifRange = req.headers['if-range'];
    const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') throw new ApiError(416, 'range_not_satisfiable', `Range ${req.headers.range} is outside 0..${size - 1}`, { param: 'Range', headers: { 'content-range': `bytes */${size}` } });
    if (!range) {
      reply.header('content-length', String(size));
      return reply.code(200).send(Readable.from(readBlob(db, a.blobId)));
    }
    reply.header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', String(range.end - range.start + 1));
    return reply.code(206).send(Readable.from(readBlob(db, a.blobId, range.start, range.end)));
  });
};

export default jobs;
