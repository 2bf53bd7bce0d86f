/**
 * Blob store in PostgreSQL: content split into fixed-size bytea chunks, so API and workers on other boxes
 * share datasets, checkpoints and adapters through DATABASE_URL alone, and byte ranges read only the
 * chunks they touch.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { once } from 'node:events';
import { pgPoolOf, type PrismaClient } from './db.js';
import { newId } from '@edgetune/core';

/** Bytes per stored chunk. */
export const BLOB_CHUNK_BYTES = 4 * 1024 * 1024;

/** A stored blob's identity. */
export interface BlobInfo {
  id: string;
  size: number;
  sha256: string;
  contentType: string;
}

async function* chunksOf(source: Buffer | string): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(source)) {
    for (let i = 0; i < source.length; i += BLOB_CHUNK_BYTES) yield source.subarray(i, i + BLOB_CHUNK_BYTES);
    return;
  }
  let pending: Buffer[] = [];
  let len = 0;
  for await (const part of createReadStream(source, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    pending.push(part);
    len += part.length;
    while (len >= BLOB_CHUNK_BYTES) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, BLOB_CHUNK_BYTES);
      pending = [all.subarray(BLOB_CHUNK_BYTES)];
      len = pending[0].length;
    }
  }
  if (len > 0) yield Buffer.concat(pending);
}

/** sha256 (hex) and size of a buffer or file. */
export async function digestOf(source: Buffer | string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  if (Buffer.isBuffer(source)) return { sha256: h.update(source).digest('hex'), size: source.length };
  for await (const part of createReadStream(source) as AsyncIterable<Buffer>) h.update(part);
  return { sha256: h.digest('hex'), size: (await stat(source)).size };
}

/**
 * Stores a buffer or a file (path) as a blob, in one transaction (no partial blob is ever visible).
 * The chunks go through pg directly: through Prisma each chunk left more than its size of resident memory
 * behind, which a worker's tuning process paid for every checkpoint.
 * @param db a client made by createPrisma
 * @returns the new blob's id, size and sha256.
 * @throws the database's errors (nothing is stored then)
 */
export async function putBlob(db: PrismaClient, source: Buffer | string, contentType: string): Promise<BlobInfo> {
  const { sha256, size } = await digestOf(source);
  const id = newId('blob');
  const client = await pgPoolOf(db).connect();
  let failed = false;
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO blobs (id, size, sha256, content_type) VALUES ($1, $2, $3, $4)', [id, size, sha256, contentType]);
    let index = 0;
    for await (const c of chunksOf(source))
      await client.query('INSERT INTO blob_chunks (blob_id, index, data) VALUES ($1, $2, $3)', [id, index++, c]);
    await client.query('COMMIT');
  } catch (e) {
    failed = true;
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release(failed); // a connection whose transaction failed midway is not reused
  }
  return { id, size, sha256, contentType };
}

/**
 * Reads bytes [start, end] (inclusive) of a blob, chunk by chunk.
 * @param end defaults to the last byte.
 */
export async function* readBlob(db: PrismaClient, id: string, start = 0, end?: number): AsyncGenerator<Buffer> {
  const blob = await db.blob.findUnique({ where: { id }, select: { size: true } });
  if (!blob) throw new Error(`blob ${id} does not exist`);
  const size = Number(blob.size);
  const last = Math.min(end ?? size - 1, size - 1);
  if (last < start) return;
  const first = Math.floor(start / BLOB_CHUNK_BYTES),
    lastChunk = Math.floor(last / BLOB_CHUNK_BYTES);
  for (let i = first; i <= lastChunk; i++) {
    const row = await db.blobChunk.findUnique({ where: { blobId_index: { blobId: id, index: i } }, select: { data: true } });
    if (!row) throw new Error(`blob ${id} is missing chunk ${i}`);
    const buf = Buffer.from(row.data.buffer, row.data.byteOffset, row.data.byteLength);
    const off = i * BLOB_CHUNK_BYTES;
    yield buf.subarray(Math.max(0, start - off), Math.min(buf.length, last - off + 1));
  }
}

/** Whole blob in memory. */
export async function blobToBuffer(db: PrismaClient, id: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of readBlob(db, id)) parts.push(p);
  return Buffer.concat(parts);
}

/** Writes a blob to a file. */
export async function blobToFile(db: PrismaClient, id: string, path: string): Promise<void> {
  const out = createWriteStream(path);
  try {
    for await (const p of readBlob(db, id)) {
      if (!out.write(p)) await once(out, 'drain');
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
}

/** A client or an interactive transaction's client: what {@link freeBlobs} runs on. */
type BlobWriter = Pick<PrismaClient, 'blob'>;

/**
 * Deletes the blobs of `ids` that no file, checkpoint or adapter references any more (their chunks go with
 * them); a blob still referenced is kept, so callers may pass every blob the rows they deleted held.
 * @returns how many blobs were deleted
 * @throws the database's errors
 */
export async function freeBlobs(db: BlobWriter, ids: readonly string[]): Promise<number> {
  if (!ids.length) return 0;
  const r = await db.blob.deleteMany({
    where: { id: { in: [...ids] }, file: { is: null }, checkpoint: { is: null }, adapter: { is: null } },
  });
  return r.count;
}
