// Scratch folders named after their owner process: a process starting later removes those of processes that
// no longer run on this host, and any older than the age limit; it keeps live ones, other hosts' and the rest.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { makeScratchDir, SCRATCH_MAX_AGE_MS, sweepScratchDirs } from '../../packages/core/src/service/scratch.js';

let parent: string;
const host =
  hostname()
    .replace(/[^A-Za-z0-9_]/g, '')
    .slice(0, 32) || 'host';
/** The pid of a process that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', 'process.pid'], { stdio: 'ignore' }).pid as number;

beforeEach(() => {
  parent = mkdtempSync(join(tmpdir(), 'edgetune-scratch-test-'));
});
afterEach(() => rmSync(parent, { recursive: true, force: true }));

describe('scratch folders', () => {
  it('names a folder after this host and process', async () => {
    const dir = await makeScratchDir(parent, 'edgetune-upload');
    expect(basename(dir)).toMatch(new RegExp(`^edgetune-upload-${host}-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(existsSync(dir)).toBe(true);
  });

  it("removes a dead process's folders and old ones; keeps live, other hosts', other names and unrelated ones", async () => {
    const mk = (name: string) => {
      mkdirSync(join(parent, name));
      writeFileSync(join(parent, name, 'upload.jsonl'), 'x');
      return join(parent, name);
    };
    const dead = mk(`edgetune-upload-${host}-${deadPid()}-abcDEF`);
    const live = await makeScratchDir(parent, 'edgetune-upload');
    const otherHost = mk(`edgetune-upload-otherbox-${deadPid()}-abcDEF`);
    const otherName = mk(`something-${host}-${deadPid()}-abcDEF`);
    const unrelated = mk('edgetune-upload-notes');
    const old = mk('edgetune-upload-otherbox-1-zzzzzz');
    const past = (Date.now() - SCRATCH_MAX_AGE_MS - 60_000) / 1000;
    utimesSync(old, past, past);

    const removed = await sweepScratchDirs(parent, ['edgetune-upload']);
    expect(removed.sort()).toEqual([dead, old].sort());
    for (const p of [dead, old]) expect(existsSync(p)).toBe(false);
    for (const p of [live, otherHost, otherName, unrelated]) expect(existsSync(p)).toBe(true);
    // any name, for a folder only scratch folders live in
    expect(await sweepScratchDirs(parent, null)).toEqual([otherName]);
    expect(await sweepScratchDirs(join(parent, 'missing'), null)).toEqual([]);
  });
});
