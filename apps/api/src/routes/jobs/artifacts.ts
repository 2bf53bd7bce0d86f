/** `/v1/jobs/:id/checkpoints` and `/v1/jobs/:id/adapter`: what a job leaves behind. */
import { Readable } from 'node:stream';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { readBlob } from '@edgetune/store';
import { ApiError } from '../../errors.js';
import { authOf } from '../../plugins/auth.js';
import { byteRange } from '../../range.js';
import { ADAPTER_FORMATS, findAdapter, findJob, listCheckpoints } from '../../services/jobs.js';
import { CheckpointList, IdParams, ListQuery, problems, ref } from '../../schemas.js';

const artifacts: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/jobs/:id/checkpoints',
    {
      schema: {
        operationId: 'listJobCheckpoints',
        summary: 'List checkpoints (newest first)',
        tags: ['jobs'],
        params: IdParams,
        querystring: ListQuery,
        response: { 200: ref(CheckpointList), ...problems(400, 401, 404) },
      },
    },
    async (req) => {
      const j = await findJob(db, authOf(req).projectId, req.params.id);
      return listCheckpoints(db, j.id, { limit: req.query.limit ?? 20, after: req.query.after });
    },
  );

  app.get(
    '/v1/jobs/:id/adapter',
    {
      schema: {
        operationId: 'downloadJobAdapter',
        summary: 'Download the tuned adapter',
        tags: ['jobs'],
        params: IdParams,
        description:
          "`peft`: a tar with `adapter_config.json` + `adapter_model.safetensors` (Hugging Face PEFT; for Edge-LLM the deepest exit's path); " +
          'a `rag` job trains no adapter and has none (404 `adapter_format_unavailable`). ' +
          '`bundle` (every method): a tar with `edge_llm.json` (exit layers, voting rule, method, retrieval settings), `metrics.json` and `manifest.json` (sha256 of every file); ' +
          "Edge-LLM adds `edge_llm.safetensors` (all windows' LoRA and exit heads) and its PEFT files under `peft/`, LoRA its PEFT files, RAG `rag_index.json` (the BM25 index over the training examples); " +
          'a compressed job adds `compressed_model.safetensors` (packed pruned and quantized base weights) and `policy.json` (its LUC policy). ' +
          'Headers: `ETag`, `X-Content-SHA256` (hex), `Repr-Digest`. Supports `Range` (single range).',
        querystring: Type.Object(
          { format: Type.Optional(Type.Enum(ADAPTER_FORMATS, { default: 'peft' })) },
          { additionalProperties: false },
        ),
        headers: Type.Object({ range: Type.Optional(Type.String()), 'if-range': Type.Optional(Type.String()) }),
        response: {
          200: { description: 'the whole archive', content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
          206: {
            description: 'the requested byte range',
            content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } },
          },
          ...problems(400, 401, 404, 409, 416),
        },
      },
    },
    async (req, reply) => {
      const j = await findJob(db, authOf(req).projectId, req.params.id);
      const format = req.query.format ?? 'peft';
      const a = await findAdapter(db, j, format);
      const size = Number(a.size);
      const etag = `"sha256-${a.sha256}"`;
      reply
        .header('accept-ranges', 'bytes')
        .header('etag', etag)
        .header('x-content-sha256', a.sha256)
        .header('repr-digest', `sha-256=:${Buffer.from(a.sha256, 'hex').toString('base64')}:`)
        .header('content-type', 'application/x-tar')
        .header('content-disposition', `attachment; filename="${j.id}-${format}.tar"`);
      // If-Range with another validator: the client's copy is stale, so it gets the whole archive
      const ifRange = req.headers['if-range'];
      const range = ifRange && ifRange !== etag ? null : byteRange(req.headers.range, size);
      if (range === 'unsatisfiable')
        throw new ApiError(416, 'range_not_satisfiable', `Range ${req.headers.range} is outside 0..${size - 1}`, {
          param: 'Range',
          headers: { 'content-range': `bytes */${size}` },
        });
      if (!range) {
        reply.header('content-length', String(size));
        return reply.code(200).send(Readable.from(readBlob(db, a.blobId)));
      }
      reply
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', String(range.end - range.start + 1));
      return reply.code(206).send(Readable.from(readBlob(db, a.blobId, range.start, range.end)));
    },
  );
};

export default artifacts;
