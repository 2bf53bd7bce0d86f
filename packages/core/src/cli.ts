/**
 * What edgetune's command lines (`edgetune`, `edgetune-engine`, `edgetune-lab`) share: typed option
 * readers that throw a {@link UsageError}, the nearest known name for a mistyped one, and a runner that
 * prints one line per error (no stack trace unless `EDGETUNE_DEBUG` is set) and exits 2 for usage errors,
 * 1 for the rest.
 */
import { distance } from 'fastest-levenshtein';

/** A command line the user must correct. */
export class UsageError extends Error {}

/** Options as `node:util` parseArgs returns them. */
export type Flags = Record<string, unknown>;

/** The string value of required option `--k`. @throws UsageError when it is missing or empty. */
export function need(v: Flags, k: string): string {
  const x = v[k];
  if (typeof x !== 'string' || !x) throw new UsageError(`--${k} is required`);
  return x;
}

/** The number value of option `--k`, or `d` when it is absent. @throws UsageError when it is not a finite number. */
export function numOpt(v: Flags, k: string, d: number): number {
  const x = v[k];
  if (x === undefined) return d;
  const n = Number(x);
  if (!Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got ${JSON.stringify(x)}`);
  return n;
}

/** The value of option `--k` among `allowed`, or `d`. @throws UsageError for any other value. */
export function pick<T extends string>(v: Flags, k: string, allowed: readonly T[], d: T): T {
  const x = v[k] ?? d;
  if (!allowed.includes(x as T)) throw new UsageError(`--${k} must be one of ${allowed.join(', ')}, got ${JSON.stringify(x)}`);
  return x as T;
}

/**
 * Runs a command line's `main` and turns its errors into one line on stderr: usage errors (and unknown
 * options) with the usage text and exit code 2, anything else with exit code 1.
 */
export function runCli(name: string, usage: string, main: () => Promise<void>, onSuccess: () => void = () => {}): void {
  main().then(onSuccess, (e: Error) => {
    if (e instanceof UsageError || (e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`${name}: ${e.message}\n\n${usage}\n`);
      process.exit(2);
    }
    process.stderr.write(`${name}: ${e.name === 'Error' ? '' : `${e.name}: `}${e.message}\n`);
    if (process.env.EDGETUNE_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  });
}

/**
 * The known name closest to `word` by Levenshtein distance, or null when none is within a third of
 * `word`'s length (at least 2 edits): what "did you mean --steps?" suggests.
 */
export function nearest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const k of known) {
    const d = distance(word, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}
