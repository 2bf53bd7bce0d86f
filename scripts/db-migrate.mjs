#!/usr/bin/env node
// `npm run db:migrate`: applies prisma/migrations to DATABASE_URL (default: the local edgetune database,
// created when missing). Other commands: `dev NAME` (create a migration from schema changes), `status`, `diff`.
// Prisma 7's CLI needs a native schema engine that can't be downloaded offline; prisma-wasm-migrate.mjs
// drives the WASM schema engine instead and writes the standard migrations folder and _prisma_migrations table.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const url = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/edgetune';
const [cmd = 'deploy', ...rest] = process.argv.slice(2);

/** Creates the target database when it does not exist (connecting to `postgres`). */
async function ensureDatabase() {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.slice(1));
  u.pathname = '/postgres';
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!r.rowCount) {
      await c.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      console.error(`created database ${name}`);
    }
  } finally {
    await c.end();
  }
}

if (cmd === 'deploy' || cmd === 'dev') await ensureDatabase();
const r = spawnSync(
  process.execPath,
  [
    join(root, 'scripts', 'prisma-wasm-migrate.mjs'),
    cmd,
    ...rest,
    join(root, 'prisma', 'schema.prisma'),
    join(root, 'prisma', 'migrations'),
  ],
  { stdio: 'inherit', env: { ...process.env, DATABASE_URL: url } },
);
process.exit(r.status ?? 1);
