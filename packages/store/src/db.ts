/** Prisma client on PostgreSQL through the pg driver adapter (no engine binary). */
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.js';
import { isDatabaseUnavailable, type StoreWatch } from './availability.js';

export { PrismaClient };
export { Prisma } from './generated/prisma/client.js';

/** The pg pool under each client createPrisma made (blob writes use it directly: blobs.ts). */
const pools = new WeakMap<PrismaClient, pg.Pool>();

/**
 * How long a query waits for a pool connection (a free one, or a new one to connect) by default, ms: then it
 * fails. Long enough for a worker's pool that a checkpoint upload holds for a while; the API asks for less.
 */
export const DB_CONNECT_TIMEOUT_MS = 10_000;

/** pg-pool's message when no pooled connection came free in time. */
const POOL_BUSY = 'timeout exceeded when trying to connect';

/** Options of {@link createPrisma}. */
export interface PrismaOptions {
  /** pool size (default 10) */
  max?: number;
  /** ms a query waits for a connection before it fails (default {@link DB_CONNECT_TIMEOUT_MS}) */
  connectionTimeoutMs?: number;
  /** told when a connection attempt fails because the server is unreachable, and when one succeeds */
  watch?: Pick<StoreWatch, 'down' | 'recovered'>;
}

/**
 * Opens a Prisma client on `url` (postgresql://...) over a pg pool of `opts.max` connections, which
 * {@link pgPoolOf} returns. A query that finds no connection within `opts.connectionTimeoutMs` (the server is
 * down, or the pool is busy) fails with an error {@link isDatabaseUnavailable} recognises instead of waiting.
 * Call `$disconnect()` when done: it also ends the pool.
 */
export function createPrisma(url: string, opts: PrismaOptions = {}): PrismaClient {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? DB_CONNECT_TIMEOUT_MS,
    keepAlive: true, // a server that vanished without closing its sockets is noticed by the OS
  });
  const { watch } = opts;
  pool.on('error', (e) => {
    // an idle connection the server closed: the pool replaces it on next use
    if (isDatabaseUnavailable(e)) watch?.down(e);
  });
  // A connection checked out but between queries (a transaction, a blob upload) that the server ends emits
  // 'error' on its client, which pg-pool does not listen to then: unheard, it would end the process. Its next
  // query fails instead, with an error isDatabaseUnavailable recognises (callers retry).
  pool.on('connect', (c) =>
    c.on('error', (e) => {
      if (isDatabaseUnavailable(e)) watch?.down(e);
    }),
  );
  if (watch) {
    pool.on('connect', () => watch.recovered());
    // pg-pool reports a failed connection attempt only to the caller: tell the watch too (a pool whose
    // connections are all busy is not an outage: its wait timing out is left to the caller)
    const connect = pool.connect.bind(pool) as (cb: (err: Error | undefined, ...rest: unknown[]) => void) => void;
    pool.connect = ((cb?: (err: Error | undefined, ...rest: unknown[]) => void) => {
      const seen = (err: Error | undefined) => {
        if (err && isDatabaseUnavailable(err) && !err.message.includes(POOL_BUSY)) watch.down(err);
      };
      if (cb)
        return connect((err, ...rest) => {
          seen(err);
          cb(err, ...rest);
        });
      return new Promise((res, rej) =>
        connect((err, client) => {
          seen(err);
          if (err) rej(err);
          else res(client as pg.PoolClient);
        }),
      );
    }) as typeof pool.connect;
  }
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
