// The PostgreSQL blob store: chunking (4 MiB bytea rows written through pg, read through Prisma), byte
// ranges across chunk boundaries, files and buffers alike, and the pool under a client.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLOB_CHUNK_BYTES, blobToBuffer, putBlob, readBlob } from '../../packages/store/src/blobs.js';
import { createPrisma, pgPoolOf, type PrismaClient } from '../../packages/store/src/db.js';
import { createTestEnv, type TestEnv } from '../helpers/service.js';

let t: TestEnv;
let db: PrismaClient;
beforeAll(async () => {
  t = await createTestEnv();
  db = createPrisma(t.databaseUrl, { max: 2 });
});
afterAll(async () => {
  await db?.$disconnect();
  await t?.destroy();
});

const bytes = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + (i >> 12)) & 255));
const collect = async (g: AsyncGenerator<Buffer>) => {
  const parts: Buffer[] = [];
  for await (const p of g) parts.push(p);
  return Buffer.concat(parts);
};

describe('blob store', () => {
  it('stores a buffer and a file in 4 MiB chunks and reads them back whole and by range', async () => {
    const data = bytes(2 * BLOB_CHUNK_BYTES + 12345);
    const a = await putBlob(db, data, 'application/octet-stream');
    const file = join(t.dir, 'blob.bin');
    writeFileSync(file, data);
    const b = await putBlob(db, file, 'application/x-tar');
    expect(b.sha256).toBe(a.sha256);
    expect(a.size).toBe(data.length);
    for (const id of [a.id, b.id]) {
      const chunks = await db.blobChunk.findMany({ where: { blobId: id }, select: { index: true, data: true }, orderBy: { index: 'asc' } });
      expect(chunks.map((c) => [c.index, c.data.length])).toEqual([
        [0, BLOB_CHUNK_BYTES],
        [1, BLOB_CHUNK_BYTES],
        [2, 12345],
      ]);
      expect((await blobToBuffer(db, id)).equals(data)).toBe(true);
      const s = BLOB_CHUNK_BYTES - 10,
        e = 2 * BLOB_CHUNK_BYTES + 5; // spans all three chunks
      expect((await collect(readBlob(db, id, s, e))).equals(data.subarray(s, e + 1))).toBe(true);
    }
    expect(await db.blob.findUnique({ where: { id: b.id } })).toMatchObject({
      size: BigInt(data.length),
      sha256: a.sha256,
      contentType: 'application/x-tar',
    });
    // an empty buffer is a blob with no chunks
    const empty = await putBlob(db, Buffer.alloc(0), 'text/plain');
    expect((await blobToBuffer(db, empty.id)).length).toBe(0);
  });

  it('a failed write stores nothing and leaves the pool usable', async () => {
    const before = await db.blob.count();
    // the chunk insert fails after the blob row went in: the transaction takes both back
    await pgPoolOf(db).query('ALTER TABLE blob_chunks ADD CONSTRAINT small_chunks CHECK (length(data) < 100) NOT VALID');
    try {
      await expect(putBlob(db, bytes(1000), 'application/octet-stream')).rejects.toThrow(/small_chunks/);
    } finally {
      await pgPoolOf(db).query('ALTER TABLE blob_chunks DROP CONSTRAINT small_chunks');
    }
    expect(await db.blob.count()).toBe(before);
    expect((await putBlob(db, bytes(50), 'text/plain')).size).toBe(50);
  });

  it('pgPoolOf knows only clients createPrisma made', () => {
    expect(pgPoolOf(db).options.max).toBe(2);
    expect(() => pgPoolOf({} as PrismaClient)).toThrow(/createPrisma/);
  });
});
