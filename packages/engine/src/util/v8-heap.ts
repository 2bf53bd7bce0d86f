// V8 heap policy of a tuning process.
import { setFlagsFromString } from 'node:v8';

let applied: boolean | null = null;

/**
 * Makes V8 favour memory over speed for the rest of this process (`--optimize-for-size`, set at run time):
 * V8 then collects before it grows the old generation instead of growing it to several times the live size
 * first. A tuning step promotes its tape's tensor handles to the old generation, so without it the JS heap
 * of a long run swings up to 115-245 MiB (bench Edge-LLM settings) and the process's peak RSS lands wherever
 * the largest swing happened. Measured side by side (packages/engine/scripts/rss-v8-policy.mjs,
 * bench/results/v8-heap-*.json): peak RSS 246-250 vs 297-316 MiB (micro-batch 8) and 218-223 vs 274-392 MiB
 * (micro-batch 4 x 2), JS heap ~75 MiB; tokens/s -1% to +2% (micro-batch 8), -2% to -7% (4 x 2; the single
 * 3576-step runs -8% / -13%, within this VM's run-to-run noise).
 * The planner's RSS terms were measured with it set.
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
