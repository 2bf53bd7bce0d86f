/** Prisma client on PostgreSQL through the pg driver adapter (no engine binary). */
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.js';

export { PrismaClient };
export { Prisma } from '../generated/prisma/client.js';

/** Opens a Prisma client on `url` (postgresql://...). Call `$disconnect()` when done. */
export function createPrisma(url: string, opts: { max?: number } = {}): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: opts.max ?? 10 }) });
}
