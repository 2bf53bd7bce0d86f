/**
 * The command table's shape and its parsing: `edgetune <group> <command> [positionals] [--options]`, with
 * node:util parseArgs, a "did you mean" for an unknown command or option, and the global options.
 */
import type { ParseArgsConfig } from 'node:util';
import { nearest, parseFlags, UsageError, unknownCommand, type Flags } from '@edgetune/core';
import { createEdgetuneClient, type EdgetuneClient } from '@edgetune/client';

/** What a command runs with. */
export interface Context {
  client: EdgetuneClient;
  /** `--json`: print the API's objects (snake_case) instead of tables */
  json: boolean;
  /** writes a line to stdout */
  print: (line: string) => void;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** One `edgetune <group> <name>` command. */
export interface Command {
  group: string;
  name: string;
  /** positional argument names, e.g. `['JOB_ID']` (all required) */
  args: string[];
  options: Options;
  /** one-line usage after the command name, e.g. `--model ID --training-file FILE_ID` */
  usage: string;
  summary: string;
  run: (ctx: Context, v: Flags, args: string[]) => Promise<void>;
}

/** Options every command takes. */
export const GLOBAL_OPTIONS: Options = {
  'api-url': { type: 'string' },
  'api-key': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** The command `argv` names, its options and positionals. @throws UsageError naming the nearest known command or option */
export function parseCommand(commands: readonly Command[], argv: string[]): { cmd: Command; values: Flags; args: string[] } {
  const [group, name, ...rest] = argv;
  const groups = [...new Set(commands.map((c) => c.group))];
  if (!groups.includes(group!)) throw unknownCommand(group!, groups);
  const inGroup = commands.filter((c) => c.group === group);
  const cmd = inGroup.find((c) => c.name === name);
  if (!cmd) {
    if (name === undefined || name.startsWith('-'))
      throw new UsageError(`${group} needs a command: ${inGroup.map((c) => c.name).join(', ')}`);
    const near = nearest(
      name,
      inGroup.map((c) => c.name),
    );
    throw new UsageError(`unknown ${group} command ${JSON.stringify(name)}${near ? ` (did you mean ${near}?)` : ''}`);
  }
  const { values, positionals } = parseFlags({
    args: rest,
    options: { ...GLOBAL_OPTIONS, ...cmd.options },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return { cmd, values, args: positionals };
  if (positionals.length < cmd.args.length) throw new UsageError(`${group} ${name} needs ${cmd.args.slice(positionals.length).join(' ')}`);
  if (positionals.length > cmd.args.length)
    throw new UsageError(`${group} ${name}: unexpected argument ${JSON.stringify(positionals[cmd.args.length])}`);
  return { cmd, values, args: positionals };
}

/** The client for `--api-url`/`--api-key`, else `EDGETUNE_API_URL`/`EDGETUNE_API_KEY`. @throws UsageError without a URL or key */
export function clientFor(v: Flags, env: NodeJS.ProcessEnv = process.env): EdgetuneClient {
  const baseUrl = (v['api-url'] as string | undefined) ?? env.EDGETUNE_API_URL;
  const apiKey = (v['api-key'] as string | undefined) ?? env.EDGETUNE_API_KEY;
  if (!baseUrl) throw new UsageError('no API URL: pass --api-url or set EDGETUNE_API_URL (e.g. http://localhost:8080)');
  if (!/^https?:\/\//.test(baseUrl)) throw new UsageError(`--api-url must be an http(s) URL, got ${JSON.stringify(baseUrl)}`);
  if (!apiKey) throw new UsageError('no API key: pass --api-key or set EDGETUNE_API_KEY');
  return createEdgetuneClient({ baseUrl, apiKey });
}
