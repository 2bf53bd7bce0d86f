// V8 heap policy of a tuning process.
import { setFlagsFromString } from 'node:v8';

let applied: boolean | null = null;

/**
 * Makes V8 favour memory over speed for the rest of this process (`--optimize-for-size`, set at run time):
 * V8 then collects before it grows the old generation instead of growing it to several times the live size
 * first. A tuning step promotes its tape's tensor handles to the old generation, so without it the JS heap
 * of a long run swings widely and the process's peak RSS lands wherever the largest swing happened; with it
 * peak RSS is lower and steadier at about the same speed (packages/lab/scripts/rss-v8-policy.mjs; measured:
 * bench/results/v8-heap-2026-12-04.json). The planner's RSS terms were measured with it set.
 *
 * Idempotent; `EDGETUNE_V8_OPTIMIZE_FOR_SIZE=0` leaves V8's defaults. Node documents run-time flag changes as
 * unsupported in general; this flag is read at each garbage collection, and its effect is measured by
 * tests/engine/v8-heap.test.ts.
 * @returns whether the flag is set by this call or an earlier one
 */
export function favourMemoryOverSpeed(env: NodeJS.ProcessEnv = process.env): boolean {
  if (applied !== null) return applied;
  applied = env.EDGETUNE_V8_OPTIMIZE_FOR_SIZE !== '0';
  if (applied) setFlagsFromString('--optimize-for-size');
  return applied;
}

/** Whether favourMemoryOverSpeed has set the flag in this process (null: not called yet). */
export function memoryFavoured(): boolean | null {
  return applied;
}
