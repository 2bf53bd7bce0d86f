/**
 * Model fingerprints: a sha256 over what defines a model folder's behaviour, its `config.json` and its
 * weights (`model.safetensors`, else `model.safetensors.index.json` and every shard it lists, the files the
 * engine loads). LUC policies are keyed by it, so a policy profiled on one set of weights is never reused
 * for others that carry the same model id (a re-pretrained default model, an operator's replaced folder).
 *
 * The fingerprint is the sha256 of a manifest, one line `name \t size \t sha256(file)` per file, so it
 * depends on the files' names and bytes only (two folders with the same files agree). Each file's hash is
 * cached in memory per (absolute path, size, mtimeMs, ctimeMs, inode): a rescan only stats the files, and a
 * file rewritten in place or replaced (even with its old mtime restored, as `cp -p` or `rsync -a` do) is
 * hashed again. The cache can be handed to a child process ({@link fingerprintCacheSnapshot},
 * {@link seedFingerprintCache}), as the worker does for its sandboxed processors.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** What identifies a file's state for the cache (a change of any field means the file may have changed). */
interface FileState {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/** One cached file hash. */
export interface FingerprintCacheEntry extends FileState {
  path: string;
  sha256: string;
}

const cache = new Map<string, FingerprintCacheEntry>();
const inflight = new Map<string, Promise<string>>();

/** Files hashed and bytes read by this process (cache misses): tests and logs read it. */
export const fingerprintStats = { filesHashed: 0, bytesHashed: 0 };

/** Forgets every cached file hash (the next fingerprint rehashes every file). */
export function clearFingerprintCache(): void {
  cache.clear();
}

/** The cached file hashes, to pass to another process (JSON-serializable). */
export function fingerprintCacheSnapshot(): FingerprintCacheEntry[] {
  return [...cache.values()];
}

/**
 * Adds cached file hashes from another process (a snapshot, or its JSON). Entries are still checked
 * against each file's current state before use, so a stale entry only costs a rehash. Bad input is ignored.
 */
export function seedFingerprintCache(entries: FingerprintCacheEntry[] | string | undefined | null): void {
  let list: unknown = entries;
  if (typeof entries === 'string') {
    try {
      list = JSON.parse(entries);
    } catch {
      return;
    }
  }
  if (!Array.isArray(list)) return;
  for (const e of list as Partial<FingerprintCacheEntry>[]) {
    if (
      e &&
      typeof e.path === 'string' &&
      typeof e.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(e.sha256) &&
      [e.size, e.mtimeMs, e.ctimeMs, e.ino].every((x) => typeof x === 'number')
    ) {
      cache.set(e.path, { path: e.path, size: e.size!, mtimeMs: e.mtimeMs!, ctimeMs: e.ctimeMs!, ino: e.ino!, sha256: e.sha256 });
    }
  }
}

const sameState = (a: FileState, b: FileState) =>
  a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;

/** sha256 (hex) of one file, from the cache when the file's state is unchanged. */
async function fileSha256(path: string): Promise<{ sha256: string; size: number }> {
  const abs = resolve(path);
  const st = await stat(abs);
  const state: FileState = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino };
  const hit = cache.get(abs);
  if (hit && sameState(hit, state)) return { sha256: hit.sha256, size: st.size };
  // one read per file and state, however many scans ask at once
  const key = `${abs}\0${state.size}\0${state.mtimeMs}\0${state.ctimeMs}\0${state.ino}`;
  let p = inflight.get(key);
  if (!p) {
    p = (async () => {
      const h = createHash('sha256');
      let bytes = 0;
      for await (const chunk of createReadStream(abs, { highWaterMark: 1 << 20 })) {
        h.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      fingerprintStats.filesHashed++;
      fingerprintStats.bytesHashed += bytes;
      const sha256 = h.digest('hex');
      // cache it only if the file did not change while it was read
      const after = await stat(abs);
      if (sameState(state, { size: after.size, mtimeMs: after.mtimeMs, ctimeMs: after.ctimeMs, ino: after.ino }))
        cache.set(abs, { path: abs, ...state, sha256 });
      return sha256;
    })().finally(() => inflight.delete(key));
    inflight.set(key, p);
  }
  return { sha256: await p, size: st.size };
}

/**
 * The files whose bytes a model folder's fingerprint covers, relative to it: `config.json` and the
 * weights the engine loads (`model.safetensors`, else the index and its shards, sorted). Null when the
 * folder has no complete weights (no weight file, or a shard the index lists is missing).
 */
export function modelContentFiles(dir: string): string[] | null {
  if (!existsSync(join(dir, 'config.json'))) return null;
  if (existsSync(join(dir, 'model.safetensors'))) return ['config.json', 'model.safetensors'];
  const index = 'model.safetensors.index.json';
  if (!existsSync(join(dir, index))) return null;
  let map: unknown;
  try {
    map = (JSON.parse(readFileSync(join(dir, index), 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch {
    return null;
  }
  if (!map || typeof map !== 'object') return null;
  const shards = [...new Set(Object.values(map as Record<string, unknown>).filter((s): s is string => typeof s === 'string'))].sort();
  if (!shards.length || shards.some((s) => !existsSync(join(dir, s)))) return null;
  return ['config.json', index, ...shards];
}

/**
 * The content fingerprint of a model folder (64 hex digits), or null when it has no complete weights
 * (a host that keeps only `config.json` has no fingerprint of its own). Unchanged files are not read
 * again (see the module's cache).
 * @throws Error when a file cannot be read
 */
export async function modelFingerprint(dir: string): Promise<string | null> {
  const files = modelContentFiles(dir);
  if (!files) return null;
  const manifest = createHash('sha256');
  for (const f of files) {
    const { sha256, size } = await fileSha256(join(dir, f));
    manifest.update(`${f}\t${size}\t${sha256}\n`);
  }
  return manifest.digest('hex');
}
