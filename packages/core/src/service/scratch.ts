/**
 * Scratch folders (upload temp files, a job's workspace) named after the process that owns them, so that a
 * process starting later can tell the folders a killed process left behind from those still in use:
 * `<name>-<host>-<pid>-XXXXXX` (mkdtemp's six characters last).
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** A scratch folder older than this is stale whoever owns it (no upload or job run lasts a week), ms. */
export const SCRATCH_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** This host's name as it appears in scratch folder names (characters other than letters, digits and `_` dropped). */
function hostTag(): string {
  return (
    hostname()
      .replace(/[^A-Za-z0-9_]/g, '')
      .slice(0, 32) || 'host'
  );
}

const NAME = /^(.+)-([A-Za-z0-9_]+)-(\d+)-[A-Za-z0-9]{6}$/;

/** Creates a scratch folder `<parent>/<name>-<host>-<pid>-XXXXXX` owned by this process. @returns its path. */
export function makeScratchDir(parent: string, name: string): Promise<string> {
  return mkdtemp(join(parent, `${name}-${hostTag()}-${process.pid}-`));
}

/** Whether process `pid` runs on this host (signal 0 checks without sending one; EPERM: it runs as another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the stale scratch folders named `<name>-...` in `parent` (`names`: the names to look at; null: any,
 * for a folder only scratch folders live in): those whose owner
 * process was on this host and no longer runs, and those older than `maxAgeMs` whatever their owner. Folders of
 * a running process, of another host (a shared folder) and anything not named as a scratch folder are kept.
 * @returns the paths removed (none when `parent` does not exist)
 */
export async function sweepScratchDirs(
  parent: string,
  names: readonly string[] | null,
  maxAgeMs: number = SCRATCH_MAX_AGE_MS,
  now: number = Date.now(),
): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(parent);
  } catch {
    return [];
  }
  const host = hostTag();
  const removed: string[] = [];
  for (const entry of entries) {
    const m = NAME.exec(entry);
    if (!m || (names && !names.includes(m[1]))) continue;
    const path = join(parent, entry);
    const info = await stat(path).catch(() => null);
    if (!info?.isDirectory()) continue;
    const orphan = m[2] === host && Number(m[3]) !== process.pid && !isRunning(Number(m[3]));
    if (!orphan && now - info.mtimeMs <= maxAgeMs) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}
