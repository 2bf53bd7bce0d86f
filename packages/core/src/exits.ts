/**
 * Where Edge-LLM's early exits sit (Yu et al., DAC 2024, §3.2): exit k reads decoder layer e_k and trains
 * the window (e_{k-1}, e_k]. The layout only: the heads themselves are the engine's (tune/exits.ts).
 */

/** Error for an invalid exit layout. */
export class ExitConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExitConfigError';
  }
}

/**
 * Default exit layers: every L/4 layers, the last exit on the last layer (official code: stride 8 on
 * 32 layers gives 7, 15, 23, 31). With fewer than 4 layers every layer is an exit.
 * @param count number of exits (default 4).
 */
export function defaultExitLayers(numLayers: number, count = 4): number[] {
  const n = Math.min(count, numLayers);
  const out = new Set<number>();
  for (let k = 1; k <= n; k++) out.add(Math.round((numLayers * k) / n) - 1);
  return [...out].sort((a, b) => a - b);
}

/**
 * Validates exit layers: sorted, unique, in range, last one = last layer.
 * @throws ExitConfigError
 */
export function validateExitLayers(layers: number[], numLayers: number): number[] {
  if (!layers.length) throw new ExitConfigError('exit_layers must not be empty');
  const s = [...layers].sort((a, b) => a - b);
  for (let i = 0; i < s.length; i++) {
    if (!Number.isInteger(s[i]) || s[i] < 0 || s[i] >= numLayers)
      throw new ExitConfigError(`exit layer ${s[i]} is outside 0..${numLayers - 1}`);
    if (i > 0 && s[i] === s[i - 1]) throw new ExitConfigError(`exit layer ${s[i]} is listed twice`);
  }
  if (s[s.length - 1] !== numLayers - 1)
    throw new ExitConfigError(`the last exit must be the last layer (${numLayers - 1}), got ${s[s.length - 1]}`);
  return s;
}
