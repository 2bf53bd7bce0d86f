/**
 * What edgetune's command lines (`edgetune`, `edgetune-engine`, `edgetune-lab`) share: typed option
 * readers that throw a {@link UsageError}, `node:util` parseArgs with "did you mean" suggestions
 * ({@link parseFlags}), the nearest known name for a mistyped one ({@link nearest}), and a runner that
 * prints one line per error (no stack trace unless `EDGETUNE_DEBUG` is set) and exits 2 for usage errors,
 * 1 for the rest ({@link runCli}).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { distance } from 'fastest-levenshtein';

/** A command line the user must correct (exit code 2). */
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
 * The known name closest to `word` by Levenshtein distance, or null when none is within a third of
 * `word`'s length (at least 2 edits): what "did you mean --steps?" suggests. Ties go to the first in `known`.
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

/** ` (did you mean X?)` for the known name nearest to `word` (as {@link nearest}), else ''. */
function didYouMean(word: string, known: readonly string[], prefix = ''): string {
  const k = nearest(word, known);
  return k === null ? '' : ` (did you mean ${prefix}${k}?)`;
}

/** `unknown command "tnue" (did you mean tune?)`: the error for a command that is not in `known`. */
export function unknownCommand(cmd: string, known: readonly string[]): UsageError {
  return new UsageError(`unknown command ${JSON.stringify(cmd)}${didYouMean(cmd, known)}`);
}

/**
 * `node:util` parseArgs, with its errors turned into {@link UsageError}s that read like a known tool's:
 * `unknown option --stpes (did you mean --steps?)` (the suggestion among `config.options`' long names),
 * `--steps needs a value`, `unexpected argument "x"`. Other errors pass through.
 * @throws UsageError for an unknown option, an option without its value, or a positional argument the
 *   config does not allow.
 */
export function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    throw usageErrorOf(e, Object.keys(config.options ?? {}));
  }
}

/**
 * A parseArgs error (code `ERR_PARSE_ARGS_*`) as a {@link UsageError}, with the nearest of `known` (long
 * option names, without `--`) suggested for an unknown option; any other error as it is.
 */
export function usageErrorOf(e: unknown, known: readonly string[] = []): unknown {
  const err = e as { code?: string; message?: string };
  const quoted = /'([^']*)'/.exec(err.message ?? '')?.[1] ?? '';
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = quoted.split('=')[0];
      return new UsageError(`unknown option ${flag}${didYouMean(flag.replace(/^-+/, ''), known, '--')}`);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // "Option '--steps <value>' argument missing" or "Option '--resume' does not take an argument"
      return new UsageError(
        /argument missing/.test(err.message ?? '') ? `${quoted.split(' ')[0]} needs a value` : `${quoted.split(' ')[0]} takes no value`,
      );
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${JSON.stringify(quoted)}`);
    default:
      return e;
  }
}

/**
 * Runs a command line's `main` and turns its errors into one line on stderr, prefixed with `name`:
 * a usage error (a {@link UsageError}, or a parseArgs error: {@link usageErrorOf}) adds the first line of
 * `usage` and a pointer to `name --help`, and exits 2; any other error exits 1, its stack printed only
 * when `EDGETUNE_DEBUG` is set. `onSuccess` runs after `main` resolves.
 */
export function runCli(name: string, usage: string, main: () => Promise<void>, onSuccess: () => void = () => {}): void {
  main().then(onSuccess, (caught: unknown) => {
    const e = usageErrorOf(caught) as Error;
    if (e instanceof UsageError) {
      process.stderr.write(`${name}: ${e.message}\n${usage.split('\n')[0]}   (${name} --help: all commands and options)\n`);
      if (process.env.EDGETUNE_DEBUG) process.stderr.write(`${e.stack}\n`);
      process.exit(2);
    }
    const message = e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e);
    process.stderr.write(`${name}: ${message}\n`);
    if (process.env.EDGETUNE_DEBUG) process.stderr.write(`${e instanceof Error ? e.stack : ''}\n`);
    process.exit(1);
  });
}
