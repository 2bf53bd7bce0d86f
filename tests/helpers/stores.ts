// Private PostgreSQL and Redis instances for tests that stop, kill and restart a store: each on a free port
// with a data folder of its own under the system temp folder, never the shared instances. The same port and
// data folder survive a restart, so clients reconnect to what they knew.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a store is stopped: `kill` is SIGKILL (a crash, no flush), `fast` a clean shutdown. */
export type StopMode = 'kill' | 'fast';

/** A store process the test owns. */
export interface PrivateStore {
  port: number;
  /** connection URL (PostgreSQL: the `postgres` database as superuser `postgres`, trust auth) */
  url: string;
  /** data folder, kept across stop and start */
  dir: string;
  /** starts it again on the same port and data folder; resolves once it accepts connections */
  start: () => Promise<void>;
  /** stops it; resolves once the process has exited */
  stop: (mode?: StopMode) => Promise<void>;
  /** stops it (SIGKILL) and removes its data folder */
  destroy: () => Promise<void>;
  /** whether its process runs now */
  running: () => boolean;
}

/** A free TCP port on 127.0.0.1 (free when asked: another process may take it later). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

/** Polls `ready` every 50 ms until it returns true. @throws Error after `ms` milliseconds, with `what` and `log()`. */
async function waitFor(ready: () => boolean | Promise<boolean>, ms: number, what: string, log: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await Promise.resolve(ready()).catch(() => false))) {
    if (Date.now() > end) throw new Error(`${what} did not start in ${ms} ms:\n${log()}`);
    await sleep(50);
  }
}

/** Sends `signal` to `proc` and resolves once it has exited. */
/** A private store's server process, its output appended to `out.log` (for error messages). */
function spawnServer(cmd: string, args: string[], opts: { uid?: number; gid?: number }, out: { log: string }): ChildProcess {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const keep = (d: Buffer) => {
    out.log += d;
  };
  p.stdout?.on('data', keep);
  p.stderr?.on('data', keep);
  return p;
}

/** Waits until `ready` says the server answers, within `ms`. @throws Error when it exits first or the time is up (with its output) */
function waitForServer(p: ChildProcess, name: string, ready: () => Promise<boolean>, ms: number, out: { log: string }): Promise<void> {
  return waitFor(
    () => {
      if (p.exitCode !== null) throw new Error(`${name} exited ${p.exitCode}:\n${out.log}`);
      return ready();
    },
    ms,
    name,
    () => out.log,
  );
}

function stopProcess(proc: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  proc.kill(signal);
  return exited;
}

/** Whether a TCP connection to 127.0.0.1:`port` gets a first byte-level answer to `probe` matching `ok`. */
async function answers(port: number, probe: string, ok: (reply: string) => boolean): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    const done = (v: boolean) => {
      s.destroy();
      res(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write(probe));
    s.once('data', (d) => done(ok(d.toString('latin1'))));
  });
}

/** The newest installed PostgreSQL binaries folder (`/usr/lib/postgresql/<major>/bin`). */
function pgBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => existsSync(join(root, d, 'bin', 'initdb'))) : [];
  if (!majors.length) throw new Error('no PostgreSQL binaries under /usr/lib/postgresql');
  return join(root, majors.sort((a, b) => Number(a) - Number(b)).at(-1)!, 'bin');
}

/** uid and gid of the `postgres` account when this process runs as root (initdb refuses root), else null. */
function postgresUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const r = spawnSync('id', ['postgres'], { encoding: 'utf8' });
  const uid = /uid=(\d+)/.exec(r.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(r.stdout)?.[1];
  if (!uid || !gid) throw new Error('running as root needs a postgres account for initdb');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * A private PostgreSQL (initdb in a temp folder, trust auth, superuser `postgres`, fsync off) on a free port,
 * started. `kill` stops the postmaster with SIGKILL; its backends exit when they notice.
 * @throws Error when initdb or the server fails (with its output).
 */
export async function startPostgres(): Promise<PrivateStore> {
  const bin = pgBin();
  const user = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'edgetune-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync', '--no-instructions'], {
    encoding: 'utf8',
    ...user,
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr}`);
  }
  const port = await freePort();
  let proc: ChildProcess | null = null;
  const out = { log: '' };
  const spawnOnce = async () => {
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'];
    args.push('-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100');
    proc = spawnServer(join(bin, 'postgres'), args, user ?? {}, out);
    // ready once a login completes (during crash recovery the server answers "starting up" instead)
    await waitForServer(proc, 'PostgreSQL', () => pgAccepts(port), 30_000, out);
  };
  const start = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) return;
    // after a SIGKILL the old backends may hold the shared memory or the pid file a moment longer
    for (let attempt = 1; ; attempt++) {
      const from = out.log.length;
      try {
        return await spawnOnce();
      } catch (e) {
        if (attempt >= 5 || !/shared memory block is still in use|lock file .* already exists/.test(out.log.slice(from))) throw e;
        await sleep(200 * attempt);
      }
    }
  };
  const stop = (mode: StopMode = 'fast') => stopProcess(proc, mode === 'kill' ? 'SIGKILL' : 'SIGINT');
  await start();
  return {
    port,
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    dir: data,
    start,
    stop,
    destroy: async () => {
      await stop('kill');
      // backends of a killed postmaster hold the data folder briefly
      await sleep(100);
      rmSync(dir, { recursive: true, force: true });
    },
    running: () => proc !== null && proc.exitCode === null && proc.signalCode === null,
  };
}

/** A PostgreSQL v3 startup packet for user postgres, database postgres. */
function startupPacket(): Buffer {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0', 'latin1');
  const b = Buffer.alloc(8 + params.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4); // protocol 3.0
  params.copy(b, 8);
  return b;
}

/** Whether PostgreSQL on `port` completes a login (AuthenticationOk, 'R'); false while it starts up or recovers. */
async function pgAccepts(port: number): Promise<boolean> {
  return answers(port, startupPacket().toString('latin1'), (reply) => reply[0] === 'R');
}

/**
 * A private redis-server on a free port with its data folder, started; `appendOnly` turns on AOF
 * (`appendfsync always`, so a SIGKILL loses nothing acknowledged), otherwise no persistence at all
 * (a restart starts empty).
 * @throws Error when the server fails to start (with its output).
 */
export async function startRedis(opts: { appendOnly?: boolean } = {}): Promise<PrivateStore & { appendOnly: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'edgetune-redis-'));
  const port = await freePort();
  const appendOnly = opts.appendOnly ?? false;
  let proc: ChildProcess | null = null;
  const out = { log: '' };
  const start = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) return;
    const args = ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', ''];
    args.push('--appendonly', appendOnly ? 'yes' : 'no', '--appendfsync', 'always', '--daemonize', 'no');
    proc = spawnServer('redis-server', args, {}, out);
    await waitForServer(proc, 'Redis', () => answers(port, 'PING\r\n', (reply) => reply.startsWith('+PONG')), 15_000, out);
  };
  // SIGTERM: redis-server shuts down cleanly (and rewrites nothing without persistence)
  const stop = (mode: StopMode = 'fast') => stopProcess(proc, mode === 'kill' ? 'SIGKILL' : 'SIGTERM');
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    appendOnly,
    start,
    stop,
    destroy: async () => {
      await stop('kill');
      rmSync(dir, { recursive: true, force: true });
    },
    running: () => proc !== null && proc.exitCode === null && proc.signalCode === null,
  };
}
