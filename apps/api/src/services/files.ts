/** JSONL datasets: validation line by line, storage as blobs, lookup, listing and deletion. */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { DatasetError, isTerminal, newId, parseJsonlLine } from '@edgetune/core';
import { freeBlobs, putBlob, type PrismaClient } from '@edgetune/store';
import { ApiError, notFound, type ProblemItem } from '../errors.js';
import { fileObject, listPage } from '../serialize.js';

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
  let line = 0,
    records = 0,
    badLines = 0;
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

/** An upload received in full: where it lies and what the form said. */
export interface Upload {
  /** the uploaded bytes, in a temporary file */
  path: string;
  filename: string;
  purpose: string;
  bytes: number;
}

const EMPTY_FILE: ProblemItem = { line: 0, code: 'empty_file', param: null, message: 'the file has no records' };

/** The file stored under the project's Idempotency-Key `key`, if any. */
function fileOfKey(db: PrismaClient, projectId: string, key: string | null) {
  return key
    ? db.file.findUnique({
        where: { projectId_idempotencyKey: { projectId, idempotencyKey: key } },
        include: { blob: { select: { sha256: true } } },
      })
    : null;
}

/**
 * Validates and stores an upload as a file of the project. With `idempotencyKey` (held by this request) the
 * file records the key, and a retry that took over the key of a request whose API died answers the file that
 * request stored rather than storing a second copy.
 * @throws ApiError 422 `invalid_file`: an empty file, bad lines (the first {@link MAX_LINE_ERRORS} in `errors`), no records
 */
export async function createFile(db: PrismaClient, projectId: string, upload: Upload, idempotencyKey: string | null) {
  const prior = await fileOfKey(db, projectId, idempotencyKey);
  if (prior) return fileObject(prior);
  if (upload.bytes === 0) throw new ApiError(422, 'invalid_file', 'The file is empty', { param: 'file', errors: [EMPTY_FILE] });
  const v = await validateJsonl(upload.path);
  if (v.badLines) {
    const first = v.errors[0];
    throw new ApiError(
      422,
      'invalid_file',
      `${v.badLines} line${v.badLines > 1 ? 's are' : ' is'} invalid; first error at line ${first.line}: ${first.message}`,
      { param: 'file', errors: v.errors },
    );
  }
  if (!v.records) throw new ApiError(422, 'invalid_file', 'The file has no records', { param: 'file', errors: [EMPTY_FILE] });
  const blob = await putBlob(db, upload.path, 'application/jsonl');
  try {
    const row = await db.file.create({
      data: {
        id: newId('file'),
        projectId,
        filename: upload.filename,
        purpose: upload.purpose,
        bytes: BigInt(upload.bytes),
        records: v.records,
        status: 'processed',
        blobId: blob.id,
        idempotencyKey,
      },
    });
    return fileObject({ ...row, sha256: blob.sha256 });
  } catch (e) {
    // the request this one took the key from was slow, not dead, and stored the file meanwhile
    const late = (e as { code?: string }).code === 'P2002' ? await fileOfKey(db, projectId, idempotencyKey) : null;
    if (!late) throw e;
    await db.blob.delete({ where: { id: blob.id } });
    return fileObject(late);
  }
}

/**
 * A page of the project's files, newest first.
 * @throws ApiError 400 `invalid_cursor` when `after` is not a file of the project
 */
export async function listFiles(db: PrismaClient, projectId: string, q: { limit: number; after?: string; purpose?: string }) {
  let before: bigint | undefined;
  if (q.after) {
    const a = await db.file.findFirst({ where: { id: q.after, projectId }, select: { seq: true } });
    if (!a) throw new ApiError(400, 'invalid_cursor', `after: no file ${q.after}`, { param: 'after' });
    before = a.seq;
  }
  const rows = await db.file.findMany({
    where: { projectId, ...(q.purpose ? { purpose: q.purpose } : {}), ...(before !== undefined ? { seq: { lt: before } } : {}) },
    orderBy: { seq: 'desc' },
    take: q.limit + 1,
    include: { blob: { select: { sha256: true } } },
  });
  return listPage(rows.map(fileObject), q.limit);
}

/** A file of the project (with its blob's sha256 and size in bytes). @throws ApiError 404 `file_not_found` */
export async function findFile(db: PrismaClient, projectId: string, id: string) {
  const f = await db.file.findFirst({ where: { id, projectId }, include: { blob: { select: { sha256: true, size: true } } } });
  if (!f) throw notFound('file', id);
  return f;
}

/**
 * Deletes a file of the project and its blob.
 * @throws ApiError 404 `file_not_found`; 409 `file_in_use` while a job that is not finished uses it
 */
export async function deleteFile(db: PrismaClient, projectId: string, id: string) {
  const f = await findFile(db, projectId, id);
  const users = await db.job.findMany({
    where: { projectId, OR: [{ trainingFile: f.id }, { validationFile: f.id }] },
    select: { id: true, status: true },
  });
  const active = users.find((j) => !isTerminal(j.status));
  if (active) throw new ApiError(409, 'file_in_use', `Job ${active.id} (${active.status}) uses this file`, { param: 'id' });
  await db.$transaction(async (tx) => {
    await tx.file.delete({ where: { id: f.id } });
    await freeBlobs(tx, [f.blobId]);
  });
  return { id: f.id, object: 'file' as const, deleted: true };
}
