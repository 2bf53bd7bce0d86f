// The command-line helpers every edgetune command shares: "did you mean" suggestions, parseArgs errors as
// usage errors, and runCli's one-line errors and exit codes.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { nearest, parseFlags, unknownCommand, usageErrorOf, UsageError } from '../../packages/core/src/cli.js';
import { REPO_ROOT } from '../engine/helpers.js';

const OPTIONS = { steps: { type: 'string' }, 'max-length': { type: 'string' }, resume: { type: 'boolean' } } as const;
const parse = (args: string[]) => parseFlags({ args, options: OPTIONS, strict: true, allowPositionals: false });
const usageMessage = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no error thrown');
};

describe('nearest', () => {
  it('suggests the closest known name within a third of the word (at least 2 edits)', () => {
    expect(nearest('stpes', ['steps', 'seed', 'lr'])).toBe('steps');
    expect(nearest('max-lenght', ['max-length', 'max-new-tokens'])).toBe('max-length');
    expect(nearest('tnue', ['backend', 'tune', 'eval'])).toBe('tune');
    expect(nearest('xyz', ['tune', 'eval'])).toBeNull();
    expect(nearest('anything', [])).toBeNull();
    // 3 edits from a 4-letter word: too far to be a typo
    expect(nearest('abcd', ['wxyd'])).toBeNull();
  });
});

describe('parseFlags', () => {
  it('parses known options as node:util parseArgs does', () => {
    expect(parse(['--steps', '3', '--resume']).values).toEqual({ steps: '3', resume: true });
  });

  it('turns an unknown option into a usage error that suggests the nearest known one', () => {
    expect(usageMessage(() => parse(['--stpes', '3']))).toBe('unknown option --stpes (did you mean --steps?)');
    expect(usageMessage(() => parse(['--max-lenght=64']))).toBe('unknown option --max-lenght (did you mean --max-length?)');
    expect(usageMessage(() => parse(['--zzzzzz']))).toBe('unknown option --zzzzzz');
    expect(usageMessage(() => parse(['-q']))).toBe('unknown option -q');
  });

  it('says which option lacks its value, which takes none, and which argument is unexpected', () => {
    expect(usageMessage(() => parse(['--steps']))).toBe('--steps needs a value');
    expect(usageMessage(() => parse(['--resume=yes']))).toBe('--resume takes no value');
    expect(usageMessage(() => parse(['20']))).toBe('unexpected argument "20"');
  });

  it('leaves other errors as they are', () => {
    const e = new TypeError('boom');
    expect(usageErrorOf(e)).toBe(e);
  });
});

describe('unknownCommand', () => {
  it('names the command and suggests the nearest known one', () => {
    expect(unknownCommand('tnue', ['tune', 'eval']).message).toBe('unknown command "tnue" (did you mean tune?)');
    expect(unknownCommand('frobnicate', ['tune', 'eval']).message).toBe('unknown command "frobnicate"');
  });
});

describe('runCli', () => {
  // a command line whose main throws `expr`, run through the built @edgetune/core as the CLIs use it
  const runThrowing = (expr: string, env: NodeJS.ProcessEnv = {}) =>
    spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { runCli, UsageError } from '@edgetune/core';
         import { parseArgs } from 'node:util';
         runCli('demo-cli', 'usage: demo-cli <command> [options]\\n\\ncommands: ...', async () => { ${expr}; });`,
      ],
      { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, EDGETUNE_DEBUG: '', ...env } },
    );

  it('prints a usage error as one line, the synopsis and where the help is, and exits 2', () => {
    const r = runThrowing(`throw new UsageError('--steps must be a number, got "x"')`);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      'demo-cli: --steps must be a number, got "x"\nusage: demo-cli <command> [options]   (demo-cli --help: all commands and options)\n',
    );
  });

  it('treats a raw parseArgs error as a usage error', () => {
    const r = runThrowing(`parseArgs({ args: ['--nope'], options: {}, strict: true })`);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('demo-cli: unknown option --nope');
  });

  it('prints any other error as one line without a stack trace and exits 1; EDGETUNE_DEBUG adds the stack', () => {
    const r = runThrowing(`throw new RangeError('no such file: model/config.json')`);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('demo-cli: RangeError: no such file: model/config.json\n');
    const d = runThrowing(`throw new Error('plain')`, { EDGETUNE_DEBUG: '1' });
    expect(d.status).toBe(1);
    expect(d.stderr.split('\n')[0]).toBe('demo-cli: plain');
    expect(d.stderr).toMatch(/\n\s+at /);
  });
});
