/**
 * Whether the stores answer: which errors mean "PostgreSQL / Redis is unreachable" (an outage, worth a 503
 * and a retry) rather than a bug, waiting for a store at start with backoff, and one log line when a store
 * goes away and one when it is back.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Redis } from 'ioredis';

/** Prisma codes of an unreachable or overloaded server (P1001 unreachable, P1002 timed out, P1008 operation timed out, P1017 connection closed, P2024 pool timeout). */
const PRISMA_UNAVAILABLE = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);
/** Driver adapter error kinds of the same (`meta.driverAdapterError.cause.kind`). */
const ADAPTER_UNAVAILABLE = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
/**
 * SQLSTATEs of a server going away or not yet there: class 08 (connection exception), 57P01-57P03 (admin
 * or crash shutdown, cannot connect now), 53300 (too many connections).
 */
const SQLSTATE_UNAVAILABLE = /^(08...|57P0[123]|53300)$/;
/** Socket errors of a connection attempt or a dropped connection (pg raises them bare). */
const SOCKET_UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** pg's own messages for a connection that died or never came. */
const PG_MESSAGES = [
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
];

interface ErrorLike {
  code?: unknown;
  message?: unknown;
  name?: unknown;
  meta?: { driverAdapterError?: { cause?: { kind?: unknown; code?: unknown; originalCode?: unknown } } };
  cause?: unknown;
}

/**
 * Whether `err` (from Prisma, the pg driver adapter or the pg pool, or anything they wrap in `cause`) means
 * that PostgreSQL is unreachable, shutting down, or has no connection free within the pool's timeout.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e = err as ErrorLike | undefined, depth = 0; e && typeof e === 'object' && depth < 5; e = e.cause as ErrorLike, depth++) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (PRISMA_UNAVAILABLE.has(code) || SOCKET_UNAVAILABLE.has(code) || SQLSTATE_UNAVAILABLE.test(code)) return true;
    const cause = e.meta?.driverAdapterError?.cause;
    if (cause) {
      if (ADAPTER_UNAVAILABLE.has(String(cause.kind))) return true;
      if (SQLSTATE_UNAVAILABLE.test(String(cause.originalCode ?? cause.code ?? ''))) return true;
    }
    const message = typeof e.message === 'string' ? e.message : '';
    if (PG_MESSAGES.some((m) => message.includes(m))) return true;
  }
  return false;
}

/** Whether `err` means either store is unreachable ({@link isDatabaseUnavailable} or {@link isRedisUnavailable}), e.g. a connection error. */
export function isStoreUnavailable(err: unknown): boolean {
  return isDatabaseUnavailable(err) || isRedisUnavailable(err);
}

/** Start of the message of errors thrown by {@link assertRedisReady}. */
export const REDIS_UNREACHABLE = 'Redis is unreachable';

/** ioredis' messages for a command that could not reach Redis. */
const REDIS_MESSAGES = [
  "Stream isn't writeable and enableOfflineQueue options is false",
  'Connection is closed.',
  'Command timed out',
  'Reached the max retries per request limit',
  REDIS_UNREACHABLE,
];

/**
 * Whether `err` is a command that could not reach Redis (an ioredis connection that is down, closed or
 * timed out), as opposed to an error Redis itself answered.
 */
export function isRedisUnavailable(err: unknown): boolean {
  const e = err as ErrorLike | undefined;
  if (!e || typeof e !== 'object') return false;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return REDIS_MESSAGES.some((m) => message.includes(m));
}

/**
 * Throws at once when `conn` is not connected, for callers that must not wait for a reconnect.
 * @throws Error (`Redis is unreachable (<status>)`), which {@link isRedisUnavailable} recognises.
 */
export function assertRedisReady(conn: Pick<Redis, 'status'>): void {
  if (conn.status !== 'ready') throw new Error(`${REDIS_UNREACHABLE} (connection ${conn.status})`);
}

/** `host:port` of a store URL, for log lines (no credentials). */
export function storeAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol.startsWith('redis') ? '6379' : '5432')}`;
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * Tracks whether one store answers and logs only the changes: one line when it goes away (with the first
 * reason) and one when it is back.
 */
export class StoreWatch {
  private up = true;

  /**
   * @param name the store as an operator knows it (`PostgreSQL`, `Redis`)
   * @param address `host:port`
   * @param log where the lines go
   */
  constructor(
    readonly name: string,
    readonly address: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Whether the store answered last time anything tried it. */
  get available(): boolean {
    return this.up;
  }

  /** The store failed with `err` (an error or a reason): logs once per outage. */
  down(err: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.log(`${this.name} at ${this.address} is unreachable (${reasonOf(err)}); retrying`);
  }

  /** The store answered: logs once when it was down. */
  recovered(): void {
    if (this.up) return;
    this.up = true;
    this.log(`${this.name} at ${this.address} is reachable again`);
  }
}

/**
 * Reports an ioredis connection's outages to `watch` (this also keeps ioredis from printing "Unhandled error
 * event" traces: the connection has an error listener). Call it before the first command.
 */
export function watchRedis(conn: Redis, watch: StoreWatch): void {
  conn.on('error', (e: Error) => watch.down(e));
  conn.on('ready', () => watch.recovered());
}

/**
 * Resolves true once `conn` is ready, or false after `ms` (e.g. to let a fail-fast connection finish its first
 * connect before requests use it, without waiting for a Redis that is down).
 */
export function redisReady(conn: Redis, ms: number): Promise<boolean> {
  if (conn.status === 'ready') return Promise.resolve(true);
  return new Promise((res) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      conn.off('ready', onReady);
      res(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    conn.once('ready', onReady);
  });
}

/** Backoff between attempts to reach a store at start, ms: 1, 2, 4, 8, then every 15 s. */
export function startBackoffMs(attempt: number): number {
  return Math.min(1000 * 2 ** attempt, 15_000);
}

/** A store that answered in a way retrying will not fix (wrong password, missing database). */
export class StoreConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConfigError';
  }
}

/**
 * Waits until PostgreSQL at `url` accepts a connection, logging one line per failed attempt (backoff
 * {@link startBackoffMs}); `signal` ends the wait.
 * @throws StoreConfigError when the server answers with an error retrying will not fix (authentication,
 *   missing database); the signal's reason when aborted.
 */
export async function waitForDatabase(url: string, log: (line: string) => void, signal?: AbortSignal): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch (e) {
      await client.end().catch(() => {});
      if (!isDatabaseUnavailable(e)) throw new StoreConfigError(`PostgreSQL at ${storeAddress(url)}: ${(e as Error).message}`);
      const ms = startBackoffMs(attempt);
      log(`PostgreSQL at ${storeAddress(url)} is unreachable (${reasonOf(e)}); retrying in ${ms / 1000} s`);
      await sleep(ms, undefined, { signal });
    }
  }
}

/**
 * Waits until Redis at `url` answers PING, logging one line per failed attempt (backoff {@link startBackoffMs});
 * `signal` ends the wait.
 * @throws StoreConfigError when Redis answers with an error retrying will not fix (e.g. a wrong password);
 *   the signal's reason when aborted.
 */
export async function waitForRedis(url: string, log: (line: string) => void, signal?: AbortSignal): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const conn = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 2000 });
    let last: Error | null = null;
    conn.on('error', (e: Error) => {
      last = e;
    });
    try {
      await conn.connect();
      await conn.ping();
      return;
    } catch (e) {
      // an answer from Redis itself (NOAUTH, WRONGPASS, ...): it is there, and refuses us
      const refusal = [e, last].find((x) => (x as Error | null)?.name === 'ReplyError') as Error | undefined;
      if (refusal) throw new StoreConfigError(`Redis at ${storeAddress(url)}: ${refusal.message}`);
      const ms = startBackoffMs(attempt);
      log(`Redis at ${storeAddress(url)} is unreachable (${reasonOf(last ?? e)}); retrying in ${ms / 1000} s`);
      await sleep(ms, undefined, { signal });
    } finally {
      conn.disconnect();
    }
  }
}

/** A short reason: the error code when there is one (ECONNREFUSED), else the message. */
function reasonOf(e: unknown): string {
  const err = e as { code?: unknown; message?: unknown; errors?: unknown[] };
  if (typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code)) return err.code;
  // node's happy-eyeballs connect rejects with an AggregateError of one error per address
  if (Array.isArray(err?.errors) && err.errors.length) return reasonOf(err.errors[0]);
  return typeof err?.message === 'string' && err.message ? err.message : String(e);
}
