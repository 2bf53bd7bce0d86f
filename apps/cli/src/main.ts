/**
 * `edgetune`: the command line of an edgetune API, on @edgetune/client. Tables and summaries for people on
 * stdout (progress and logs on stderr), the API's JSON objects with `--json`. Errors are one line; exit code
 * 2 for usage errors, 1 for the rest (and for `jobs watch` of a job that did not succeed).
 */
import { runCli } from '@edgetune/core';
import { clientFor, parseCommand, type Command } from './args.js';
import { RESOURCE_COMMANDS } from './commands.js';
import { JOB_COMMANDS } from './jobs.js';
import { WATCH_COMMAND } from './watch.js';

const COMMANDS: Command[] = [
  ...RESOURCE_COMMANDS.filter((c) => c.group === 'files'),
  ...JOB_COMMANDS,
  WATCH_COMMAND,
  ...RESOURCE_COMMANDS.filter((c) => c.group !== 'files'),
];

const line = (c: Command) => `  ${`${c.group} ${c.name}`.padEnd(17)}${c.summary}`;

const USAGE = `usage: edgetune <command> [arguments] [options]

commands:
${COMMANDS.map(line).join('\n')}

options of every command:
  --api-url URL   the API (default: $EDGETUNE_API_URL)
  --api-key KEY   an API key (default: $EDGETUNE_API_KEY)
  --json          print the API's JSON objects (one per line) instead of tables
  -h, --help      the command's options

edgetune <command> --help shows a command's options.`;

const commandUsage = (c: Command) => `usage: edgetune ${c.group} ${c.name} ${c.usage}\n\n${c.summary}`;

async function main(argv: string[]): Promise<void> {
  if (!argv.length || ['help', '--help', '-h'].includes(argv[0]!)) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { cmd, values, args } = parseCommand(COMMANDS, argv);
  if (values.help) {
    process.stdout.write(`${commandUsage(cmd)}\n`);
    return;
  }
  const ctx = { client: clientFor(values), json: values.json === true, print: (s: string) => void process.stdout.write(`${s}\n`) };
  await cmd.run(ctx, values, args);
}

runCli('edgetune', USAGE, () => main(process.argv.slice(2)));
