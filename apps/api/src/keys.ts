/** API keys: `et-<44 base62 chars>` secrets; only their sha256 is stored. */
import { createHash } from 'node:crypto';
import type { Prisma, PrismaClient } from '@edgetune/store';
import { newId, randomString } from '@edgetune/core';

/** sha256 (hex) of a key secret. Keys are high-entropy random strings, so a fast hash is enough. */
export function hashKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** A new random secret. */
export function newKeySecret(): string {
  return `et-${randomString(44)}`;
}

/** Characters of the secret kept for display. */
export function keyPrefix(secret: string): string {
  return secret.slice(0, 7);
}

/** Creates an API key row for `projectId` (through `db`, a client or a transaction) and returns it with the secret (shown once). */
export async function createApiKey(
  db: Prisma.TransactionClient,
  projectId: string,
  opts: { name: string; admin: boolean; secret?: string },
) {
  const secret = opts.secret ?? newKeySecret();
  const row = await db.apiKey.create({
    data: { id: newId('key'), projectId, name: opts.name, admin: opts.admin, prefix: keyPrefix(secret), hash: hashKey(secret) },
  });
  return { row, secret };
}

/**
 * When `secret` is set and no API key exists at all: creates project `default` with an admin key
 * holding that secret. Idempotent across restarts and safe against concurrent starts.
 * @returns true when it created the key.
 */
export async function bootstrapAdminKey(db: PrismaClient, secret: string | null): Promise<boolean> {
  if (!secret) return false;
  return db.$transaction(async (tx) => {
    await tx.$executeRawUnsafe('LOCK TABLE api_keys IN EXCLUSIVE MODE');
    if ((await tx.apiKey.count()) > 0) return false;
    const project =
      (await tx.project.findFirst({ where: { name: 'default' } })) ??
      (await tx.project.create({ data: { id: newId('project'), name: 'default' } }));
    await tx.apiKey.create({
      data: { id: newId('key'), projectId: project.id, name: 'bootstrap', admin: true, prefix: keyPrefix(secret), hash: hashKey(secret) },
    });
    return true;
  });
}
