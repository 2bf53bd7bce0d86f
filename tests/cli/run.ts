// Runs the built `edgetune` command as a child process (asynchronously: the API under test runs in this process).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/service.js';

/** Output and exit code of one `edgetune` run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `edgetune args` with `env` on top of a clean environment (no EDGETUNE_* from the caller). */
export function edgetune(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EDGETUNE_')));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'apps', 'cli', 'bin', 'edgetune.js'), ...args],
      { env: { ...base, ...env }, timeout: timeoutMs, cwd: REPO_ROOT },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
