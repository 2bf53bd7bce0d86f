/** Prisma client on PostgreSQL through the pg driver adapter (no engine binary). */
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.js';

export { PrismaClient };
export { Prisma } from './generated/prisma/client.js';

/** The pg pool under each client createPrisma made (blob writes use it directly: blobs.ts). */
const pools = new WeakMap<PrismaClient, pg.Pool>();

/**
 * Opens a Prisma client on `url` (postgresql://...) over a pg pool of `opts.max` connections (default 10),
 * which {@link pgPoolOf} returns. Call `$disconnect()` when done: it also ends the pool.
 */
export function createPrisma(url: string, opts: { max?: number } = {}): PrismaClient {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10 });
  pool.on('error', () => {}); // an idle connection the server closed: the pool replaces it on next use
  const client = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
  pools.set(client, pool);
  return client;
}

/**
 * The pg pool under a client made by {@link createPrisma}, for statements that must not go through Prisma.
 * @throws Error for a client made otherwise (e.g. a transaction client).
 */
export function pgPoolOf(db: PrismaClient): pg.Pool {
  const pool = pools.get(db);
  if (!pool) throw new Error('pgPoolOf: not a client made by createPrisma');
  return pool;
}
