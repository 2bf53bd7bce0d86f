/** API keys: `et-<44 base62 chars>` secrets; only their sha256 is stored. */
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Prisma, PrismaClient } from '@edgetune/store';
import { newId, randomString } from '@edgetune/core';

/** sha256 (hex) of a key secret. Keys are high-entropy random strings, so a fast hash is enough. */
export function hashKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The request's `Authorization: Bearer <key>` secret, or null (no header, or another scheme). */
export function bearerOf(req: FastifyRequest): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m ? m[1] : null;
}

const bearerHashes = new WeakMap<FastifyRequest, string | null>();

/** {@link hashKey} of the request's bearer secret, or null: computed once per request (rate limits and auth both need it). */
export function bearerHashOf(req: FastifyRequest): string | null {
  let h = bearerHashes.get(req);
  if (h === undefined) {
    const secret = bearerOf(req);
    h = secret === null ? null : hashKey(secret);
    bearerHashes.set(req, h);
  }
  return h;
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
 * When `secret` is set and no API key exists at all: creates project `default` with the operator key
 * holding that secret (an admin key of every project: the only key that may create projects and administer
 * projects other than its own). Idempotent across restarts and safe against concurrent starts.
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
      data: {
        id: newId('key'),
        projectId: project.id,
        name: 'bootstrap',
        admin: true,
        operator: true,
        prefix: keyPrefix(secret),
        hash: hashKey(secret),
      },
    });
    return true;
  });
}

/** What a request's key resolves to. */
export interface ResolvedKey {
  id: string;
  projectId: string;
  admin: boolean;
  operator: boolean;
  lastUsedAt: Date | null;
}

/**
 * Valid API keys by hash, each for `ttlMs` after it was read (so a key revoked through another API process
 * stops working within `ttlMs`), at most `maxEntries` at once (the oldest read goes first).
 */
export class ApiKeyCache {
  private readonly entries = new Map<string, { key: ResolvedKey; until: number }>();
  constructor(
    readonly ttlMs = 1000,
    readonly maxEntries = 10_000,
  ) {}

  /** The cached key of `hash`, or undefined when absent or expired. */
  get(hash: string, now = Date.now()): ResolvedKey | undefined {
    const e = this.entries.get(hash);
    if (e && e.until > now) return e.key;
    if (e) this.entries.delete(hash);
    return undefined;
  }

  /** Caches a valid key. */
  set(hash: string, key: ResolvedKey, now = Date.now()): void {
    this.entries.delete(hash);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(hash, { key, until: now + this.ttlMs });
  }

  /** Forgets every key (after a revocation in this process, so that it takes effect at once). */
  clear(): void {
    this.entries.clear();
  }
}
