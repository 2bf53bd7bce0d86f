/** `/v1/files`: JSONL datasets, validated line by line at upload and stored as blobs. */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { makeScratchDir } from '@edgetune/core';
import { readBlob } from '@edgetune/store';
import { ApiError, type ProblemItem } from '../errors.js';
import { multipartError } from '../plugins/errors.js';
import { assertStorable } from '../validation.js';
import { authOf } from '../plugins/auth.js';
import { idempotencyKeyOf, idempotencyOptions, idempotent, requestHash } from '../idempotency.js';
import { createFile, deleteFile, FILE_PURPOSES, findFile, listFiles, type Upload } from '../services/files.js';
import { fileObject } from '../serialize.js';
import { DeletedFile, FileList, FileObject, IdParams, listQuery, problems, ref } from '../schemas.js';

/** Name of an upload's scratch folder in the OS temp folder (server.ts removes those of dead API processes at start). */
export const UPLOAD_SCRATCH = 'edgetune-upload';

/**
 * Reads the multipart form of an upload into `path` (its sha256, hex, computed on the way).
 * @throws ApiError 400 `invalid_request` for a missing or unknown field or a NUL in one, 400 `invalid_multipart`
 *   for a malformed body, 413 `file_too_large` past `maxBytes`
 */
async function receiveUpload(req: FastifyRequest, path: string, maxBytes: number): Promise<Upload & { sha256: string }> {
  let purpose: string | null = null;
  let filename: string | null = null;
  const hash = createHash('sha256');
  let bytes = 0;
  // the parser's errors (no boundary, a truncated part) are the client's: 400 invalid_multipart
  try {
    for await (const part of req.parts({ limits: { fileSize: maxBytes, files: 1, fields: 4 } })) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file') {
          part.file.resume();
          throw new ApiError(400, 'invalid_request', `Unexpected file field "${part.fieldname}"; send the dataset as "file"`, {
            param: part.fieldname,
          });
        }
        filename = part.filename || 'upload.jsonl';
        await pipeline(
          part.file,
          new Transform({
            transform(chunk: Buffer, _e, cb) {
              hash.update(chunk);
              bytes += chunk.length;
              cb(null, chunk);
            },
          }),
          createWriteStream(path),
        );
        if (part.file.truncated)
          throw new ApiError(413, 'file_too_large', `The file exceeds the upload limit of ${maxBytes} bytes`, { param: 'file' });
      } else if (part.fieldname === 'purpose') {
        purpose = String(part.value);
      }
    }
  } catch (e) {
    throw multipartError(e);
  }
  assertStorable({ purpose, file: filename }, '');
  const missing: ProblemItem[] = [];
  if (!purpose) missing.push({ param: 'purpose', message: 'purpose is required' });
  else if (!(FILE_PURPOSES as readonly string[]).includes(purpose))
    missing.push({ param: 'purpose', message: `purpose must be one of ${JSON.stringify(FILE_PURPOSES)}` });
  if (!filename) missing.push({ param: 'file', message: 'file is required' });
  if (missing.length || !purpose || !filename) {
    throw new ApiError(400, 'invalid_request', `Invalid request: ${missing.map((m) => m.message).join('; ')}`, {
      param: missing[0].param,
      errors: missing,
    });
  }
  return { path, filename, purpose, bytes, sha256: hash.digest('hex') };
}

const files: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;
  const idem = idempotencyOptions(config);

  app.post(
    '/v1/files',
    {
      schema: {
        operationId: 'createFile',
        summary: 'Upload a JSONL dataset',
        description:
          'multipart/form-data with `purpose` (`fine-tune`) and `file` (JSONL: `{"prompt","completion"}` or `{"messages"}` per line). ' +
          `Every line is validated; a bad line answers 422 naming it. Size limit: EDGETUNE_MAX_FILE_BYTES. Supports Idempotency-Key.`,
        tags: ['files'],
        consumes: ['multipart/form-data'],
        body: Type.Object({
          purpose: Type.String({ enum: [...FILE_PURPOSES] }),
          file: Type.String({ format: 'binary' }),
        }),
        response: { 201: ref(FileObject), ...problems(400, 401, 409, 413, 415, 422) },
      },
      // the body schema documents the multipart form; the handler reads the stream itself
      attachValidation: true,
    },
    async (req, reply) => {
      const { projectId } = authOf(req);
      if (!req.isMultipart())
        throw new ApiError(415, 'unsupported_media_type', 'Upload files as multipart/form-data with fields "purpose" and "file"');
      const dir = await makeScratchDir(tmpdir(), UPLOAD_SCRATCH);
      try {
        const upload = await receiveUpload(req, join(dir, 'upload.jsonl'), config.maxFileBytes);
        const key = idempotencyKeyOf(req);
        const { purpose, filename, sha256 } = upload;
        return await idempotent(
          db,
          req,
          reply,
          requestHash({ purpose, filename, sha256 }),
          async () => ({ status: 201, body: await createFile(db, projectId, upload, key) }),
          idem,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  app.get(
    '/v1/files',
    {
      schema: {
        operationId: 'listFiles',
        summary: 'List files',
        tags: ['files'],
        querystring: listQuery({ purpose: Type.Optional(Type.String()) }),
        response: { 200: ref(FileList), ...problems(400, 401) },
      },
    },
    async (req) =>
      listFiles(db, authOf(req).projectId, { limit: req.query.limit ?? 20, after: req.query.after, purpose: req.query.purpose }),
  );

  app.get(
    '/v1/files/:id',
    {
      schema: {
        operationId: 'getFile',
        summary: 'Get a file',
        tags: ['files'],
        params: IdParams,
        response: { 200: ref(FileObject), ...problems(401, 404) },
      },
    },
    async (req) => fileObject(await findFile(db, authOf(req).projectId, req.params.id)),
  );

  app.get(
    '/v1/files/:id/content',
    {
      schema: {
        operationId: 'getFileContent',
        summary: 'Download a file',
        tags: ['files'],
        params: IdParams,
        response: {
          200: { description: 'the file as uploaded', content: { 'application/jsonl': { schema: { type: 'string' } } } },
          ...problems(401, 404),
        },
      },
    },
    async (req, reply) => {
      const f = await findFile(db, authOf(req).projectId, req.params.id);
      reply
        .header('content-type', 'application/jsonl; charset=utf-8')
        .header('content-length', String(f.blob.size))
        .header(
          'content-disposition',
          `attachment; filename="${f.filename.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(f.filename)}`,
        );
      return reply.send(Readable.from(readBlob(db, f.blobId)) as never);
    },
  );

  app.delete(
    '/v1/files/:id',
    {
      schema: {
        operationId: 'deleteFile',
        summary: 'Delete a file',
        description: 'Refused (409) while a job that is not finished uses it.',
        tags: ['files'],
        params: IdParams,
        response: { 200: ref(DeletedFile), ...problems(401, 404, 409) },
      },
    },
    async (req) => deleteFile(db, authOf(req).projectId, req.params.id),
  );
};

export default files;
