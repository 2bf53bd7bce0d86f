// favourMemoryOverSpeed (util/v8-heap.ts): the flag it sets at run time must really bound the JS heap, and
// the trainer must set it. Children: the flag is process-wide.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

const dist = join(REPO_ROOT, 'packages', 'engine', 'dist');

// Promoted garbage as a tuning step makes it: a ring of ~60 MB of live objects, each replaced after
// surviving a few scavenges. Prints the largest V8 heapTotal seen, MiB.
const churn = (setFlag: string) => `
  ${setFlag}
  const N = 60000, ring = new Array(N); let max = 0;
  for (let i = 0; i < 15 * N; i++) {
    ring[i % N] = { a: new Array(128).fill(i) };
    if (i % 1000 === 0) max = Math.max(max, process.memoryUsage().heapTotal);
  }
  console.log(max / 2 ** 20);`;

function maxHeapMiB(setFlag: string, env: NodeJS.ProcessEnv = {}): number {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', churn(setFlag)], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return Number(r.stdout.trim());
}

describe('favourMemoryOverSpeed', () => {
  it('keeps the JS heap of a churning process well below V8 default growth, and EDGETUNE_V8_OPTIMIZE_FOR_SIZE=0 opts out', () => {
    const set = `import { favourMemoryOverSpeed } from ${JSON.stringify(join(dist, 'util', 'v8-heap.js'))}; if (!favourMemoryOverSpeed()) throw new Error('not set');`;
    const optOut = `import { favourMemoryOverSpeed } from ${JSON.stringify(join(dist, 'util', 'v8-heap.js'))}; if (favourMemoryOverSpeed()) throw new Error('set');`;
    const plain = maxHeapMiB('');
    const favoured = maxHeapMiB(set);
    const optedOut = maxHeapMiB(optOut, { EDGETUNE_V8_OPTIMIZE_FOR_SIZE: '0' });
    // Bounds with room for a loaded machine: the policy roughly halves V8's default growth.
    expect(favoured).toBeLessThan(0.75 * Math.min(plain, optedOut));
    expect(optedOut).toBeGreaterThan(1.3 * favoured);
  });
});
