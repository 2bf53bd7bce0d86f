/** `/v1/files`: JSONL datasets, validated line by line at upload and stored as blobs. */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import { createInterface } from 'node:readline';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DatasetError, parseJsonlLine } from '@edgetune/core';
import type { AppDeps } from '../app.js';
import { ApiError, notFound, type ProblemItem } from '../errors.js';
import { authOf } from '../auth.js';
import { idempotencyKeyOf, idempotencyOptions, idempotent, requestHash } from '../idempotency.js';
import { newId } from '@edgetune/core';
import { putBlob, readBlob } from '@edgetune/store';
import { isTerminal } from '@edgetune/core';
import { fileObject, listPage } from '../serialize.js';
import { DeletedFile, FileList, FileObject, IdParams, listQuery, problems, ref } from '../schemas.js';

/** Purposes a file may have. */
export const FILE_PURPOSES = ['fine-tune'] as const;
/** Most bad lines listed in one upload error. */
const MAX_LINE_ERRORS = 20;

/** Result of validating a JSONL file. */
interface Validation {
  records: number;
  errors: ProblemItem[];
  badLines: number;
}

/** Validates every line of a JSONL file with the engine's rules; collects the first errors. */
async function validateJsonl(path: string): Promise<Validation> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0, records = 0, badLines = 0;
  const errors: ProblemItem[] = [];
  for await (const raw of rl) {
    line++;
    try {
      if (parseJsonlLine(line === 1 ? raw.replace(/^\uFEFF/, '') : raw, line)) records++;
    } catch (e) {
      if (!(e instanceof DatasetError)) throw e;
      badLines++;
      if (errors.length < MAX_LINE_ERRORS) errors.push({ line: e.line, code: e.code, param: e.param, message: e.message });
    }
  }
  return { records, errors, badLines };
}

const files: FastifyPluginAsyncTypebox<AppDeps> = async (app, { db, config }) => {
  app.post('/v1/files', {
    schema: {
      operationId: 'createFile',
      summary: 'Upload a JSONL dataset',
      description: 'multipart/form-data with `purpose` (`fine-tune`) and `file` (JSONL: `{"prompt","completion"}` or `{"messages"}` per line). '
        + `Every line is validated; a bad line answers 422 naming it. Size limit: EDGETUNE_MAX_FILE_BYTES. Supports Idempotency-Key.`,
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
  }, async (req, reply) => {
    const { projectId } = authOf(req);
    if (!req.isMultipart()) throw new ApiError(415, 'unsupported_media_type', 'Upload files as multipart/form-data with fields "purpose" and "file"');
    const dir = await mkdtemp(join(tmpdir(), 'edgetune-upload-'));
    try {
      let purpose: string | null = null;
      let filename: string | null = null;
      const tmp = join(dir, 'upload.jsonl');
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const part of req.parts({ limits: { fileSize: config.maxFileBytes, files: 1, fields: 4 } })) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') {
            part.file.resume();
            throw new ApiError(400, 'invalid_request', `Unexpected file field "${part.fieldname}"; send the dataset as "file"`, { param: part.fieldname });
          }
          filename = part.filename || 'upload.jsonl';
          await pipeline(part.file, new Transform({ transform(chunk: Buffer, _e, cb) { hash.update(chunk); bytes += chunk.length; cb(null, chunk); } }), createWriteStream(tmp));
          if (part.file.truncated) throw new ApiError(413, 'file_too_large', `The file exceeds the upload limit of ${config.maxFileBytes} bytes`, { param: 'file' });
        } else if (part.fieldname === 'purpose') {
          purpose = String(part.value);
        }
      }
      const missing: ProblemItem[] = [];
      if (!purpose) missing.push({ param: 'purpose', message: 'purpose is required' });
      else if (!(FILE_PURPOSES as readonly string[]).includes(purpose)) missing.push({ param: 'purpose', message: `purpose must be one of ${JSON.stringify(FILE_PURPOSES)}` });
      if (!filename) missing.push({ param: 'file', message: 'file is required' });
      if (missing.length) throw new ApiError(400, 'invalid_request', `Invalid request: ${missing.map((m) => m.message).join('; ')}`, { param: missing[0].param, errors: missing });
      const sha256 = hash.digest('hex');
      const idempotencyKey = idempotencyKeyOf(req);
      // the file a request with this key stored (a retry that took the key over from a request whose API died)
      const fileOfKey = () => (idempotencyKey
        ? db.file.findUnique({ where: { projectId_idempotencyKey: { projectId, idempotencyKey } }, include: { blob: { select: { sha256: true } } } }) : null);
      return await idempotent(db, req, reply, requestHash({ purpose, filename, sha256 }), async () => {
        const prior = await fileOfKey();
        if (prior) return { status: 201, body: fileObject(prior) };
        if (bytes === 0) throw new ApiError(422, 'invalid_file', 'The file is empty', { param: 'file', errors: [{ line: 0, code: 'empty_file', param: null, message: 'the file has no records' }] });
        const v = await validateJsonl(tmp);
        if (v.badLines) {
          const first = v.errors[0];
          throw new ApiError(422, 'invalid_file', `${v.badLines} line${v.badLines > 1 ? 's are' : ' is'} invalid; first error at line ${first.line}: ${first.message}`, { param: 'file', errors: v.errors });
        }
        if (!v.records) throw new ApiError(422, 'invalid_file', 'The file has no records', { param: 'file', errors: [{ line: 0, code: 'empty_file', param: null, message: 'the file has no records' }] });
        const blob = await putBlob(db, tmp, 'application/jsonl');
        let row;
        try {
          row = await db.file.create({ data: { id: newId('file'), projectId, filename: filename!, purpose: purpose!, bytes: BigInt(bytes), records: v.records, status: 'processed', blobId: blob.id, idempotencyKey } });
        } catch (e) {
          // the request this one took the key from was slow, not dead, and stored the file meanwhile
          const late = (e as { code?: string }).code === 'P2002' ? await fileOfKey() : null;
          if (!late) throw e;
          await db.blob.delete({ where: { id: blob.id } });
          return { status: 201, body: fileObject(late) };
        }
        return { status: 201, body: fileObject({ ...row, sha256: blob.sha256 }) };
      }, idempotencyOptions(config));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  app.get('/v1/files', {
    schema: {
      operationId: 'listFiles', summary: 'List files', tags: ['files'],
      querystring: listQuery({ purpose: Type.Optional(Type.String()) }),
      response: { 200: ref(FileList), ...problems(400, 401) },
    },
  }, async (req) => {
    const { projectId } = authOf(req);
    const limit = req.query.limit ?? 20;
    let before: bigint | undefined;
    if (req.query.after) {
      const a = await db.file.findFirst({ where: { id: req.query.after, projectId }, select: { seq: true } });
      if (!a) throw new ApiError(400, 'invalid_cursor', `after: no file ${req.query.after}`, { param: 'after' });
      before = a.seq;
    }
    const rows = await db.file.findMany({
      where: { projectId, ...(req.query.purpose ? { purpose: req.query.purpose } : {}), ...(before !== undefined ? { seq: { lt: before } } : {}) },
      orderBy: { seq: 'desc' }, take: limit + 1, include: { blob: { select: { sha256: true } } },
    });
    return listPage(rows.map(fileObject), limit);
  });

  const findFile = async (projectId: string, id: string) => {
    const f = await db.file.findFirst({ where: { id, projectId }, include: { blob: { select: { sha256: true, size: true } } } });
    if (!f) throw notFound('file', id);
    return f;
  };

  app.get('/v1/files/:id', {
    schema: { operationId: 'getFile', summary: 'Get a file', tags: ['files'], params: IdParams, response: { 200: ref(FileObject), ...problems(401, 404) } },
  }, async (req) => fileObject(await findFile(authOf(req).projectId, req.params.id)));

  app.get('/v1/files/:id/content', {
    schema: {
      operationId: 'getFileContent', summary: 'Download a file', tags: ['files'], params: IdParams,
      response: { 200: { description: 'the file as uploaded', content: { 'application/jsonl': { schema: { type: 'string' } } } }, ...problems(401, 404) },
    },
  }, async (req, reply) => {
    const f = await findFile(authOf(req).projectId, req.params.id);
    reply.header('content-type', 'application/jsonl; charset=utf-8').header('content-length', String(f.blob.size))
      .header('content-disposition', `attachment; filename="${f.filename.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(f.filename)}`);
    return reply.send(Readable.from(readBlob(db, f.blobId)) as never);
  });

  app.delete('/v1/files/:id', {
    schema: { operationId: 'deleteFile', summary: 'Delete a file', description: 'Refused (409) while a job that is not finished uses it.', tags: ['files'], params: IdParams, response: { 200: ref(DeletedFile), ...problems(401, 404, 409) } },
  }, async (req) => {
    const { projectId } = authOf(req);
    const f = await findFile(projectId, req.params.id);
    const users = await db.job.findMany({ where: { projectId, OR: [{ trainingFile: f.id }, { validationFile: f.id }] }, select: { id: true, status: true } });
    const active = users.find((j) => !isTerminal(j.status));
    if (active) throw new ApiError(409, 'file_in_use', `Job ${active.id} (${active.status}) uses this file`, { param: 'id' });
    await db.$transaction([db.file.delete({ where: { id: f.id } }), db.blob.delete({ where: { id: f.blobId } })]);
    return { id: f.id, object: 'file' as const, deleted: true };
  });
};

export default files;
