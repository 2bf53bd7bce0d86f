/**
 * Reads that go to the pg pool under Prisma in one statement, for hot paths where Prisma's own query and result
 * handling cost more than the database (`GET /v1/jobs/{id}`). Rows come back as Prisma would return them for
 * models whose columns are their fields' names in snake case.
 */
import pg from 'pg';
import { pgPoolOf, type Prisma, type PrismaClient } from './db.js';

/** The pool under a client made by createPrisma, else null. */
function poolOrNull(db: PrismaClient | Prisma.TransactionClient): pg.Pool | null {
  try {
    return pgPoolOf(db as PrismaClient);
  } catch {
    return null;
  }
}

const TIMESTAMP = 1114; // timestamp without time zone: Prisma stores UTC there
const INT8 = 20;

/** Column types parsed as Prisma does: `timestamp` as a UTC Date, `int8` as a bigint; the rest as pg does. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === TIMESTAMP) return (s: string) => new Date(`${s.replace(' ', 'T')}Z`);
    if (oid === INT8) return (s: string) => BigInt(s);
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

/** `project_id` -> `projectId` (remembered: the same few columns come back on every request). */
const camelNames = new Map<string, string>();
function camel(column: string): string {
  let name = camelNames.get(column);
  if (name === undefined) {
    name = column.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    if (camelNames.size < 10_000) camelNames.set(column, name);
  }
  return name;
}

/**
 * The rows of one parameterised statement, each column under its camelCase name: on the pool under `db` when
 * createPrisma made it, else (a transaction client) through Prisma's raw query. With `name`, the statement is
 * prepared once per connection and the server plans it once: it must then name its columns (a `SELECT *` plan
 * kept on a connection fails once a migration adds a column).
 * @throws the pg or Prisma error of the statement (an unreachable server: see isDatabaseUnavailable)
 */
export async function queryRows<T = Record<string, unknown>>(
  db: PrismaClient | Prisma.TransactionClient,
  text: string,
  values: unknown[],
  name?: string,
): Promise<T[]> {
  const pool = poolOrNull(db);
  const rows: Record<string, unknown>[] = pool
    ? (await pool.query({ text, values, types: TYPES, ...(name ? { name } : {}) })).rows
    : await db.$queryRawUnsafe<Record<string, unknown>[]>(text, ...values);
  return rows.map((row) => {
    const out: Record<string, unknown> = {};
    for (const k in row) out[camel(k)] = row[k];
    return out as T;
  });
}
