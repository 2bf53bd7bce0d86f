// Shared test helpers for the engine tests.
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { Rng } from '../../packages/engine/src/util/rng.js';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(here, '..', '..');
/** The PyTorch-referenced tiny LLaMA (tests/fixtures/llama-tiny-gqa/README.md says how it was made). */
export const FIXTURE_DIR = join(REPO_ROOT, 'tests', 'fixtures', 'llama-tiny-gqa');

/** Uses the engine's production backend choice (wasm + our kernels here). */
export async function useTestBackend(): Promise<void> {
  await initBackend({ quiet: true });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Deterministic uniform values in [-1, 1) for test data (the engine's seeded Rng). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next() * 2 - 1;
}
