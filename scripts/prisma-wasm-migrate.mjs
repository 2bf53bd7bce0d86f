// Offline replacement for `prisma migrate dev|deploy|diff` and `prisma db push` with Prisma 7.10.x.
// Prisma 7's CLI needs the native schema-engine binary, downloaded from binaries.prisma.sh, which an offline
// machine cannot fetch. This drives the WebAssembly schema engine (npm: @prisma/schema-engine-wasm) through a
// driver adapter. Written against prisma 7.10.1, @prisma/adapter-pg 7.10.1, @prisma/adapter-better-sqlite3 7.10.0,
// @prisma/driver-adapter-utils 7.10.x, @prisma/schema-engine-wasm 8.1.0-2.59be4fda12412a79eeb9c2ae727b6aa723593323,
// PostgreSQL 15 and SQLite (better-sqlite3 12.11.1).
//
// usage: DATABASE_URL=... node prisma-wasm-migrate.mjs <dev NAME | deploy | push | status | diff [--from-empty]> <schema.prisma> <migrationsDir>
//   DATABASE_URL: postgresql://user[:pw]@host:port/db   or   file:./dev.db (SQLite)
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as runtime from '@prisma/schema-engine-wasm/schema_engine_bg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';

// The package's main entry does `import './x.wasm'`, which Node 20 refuses (ERR_UNKNOWN_FILE_EXTENSION):
// instantiate the module by hand, as @prisma/internals does.
const require = createRequire(import.meta.url);
const wasmFile = path.join(path.dirname(require.resolve('@prisma/schema-engine-wasm/schema_engine_bg')), 'schema_engine_bg.wasm');
const instance = new WebAssembly.Instance(new WebAssembly.Module(await fs.readFile(wasmFile)), { './schema_engine_bg.js': runtime });
runtime.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start();

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is not set');

async function postgresFactory() {
  const { PrismaPg } = await import('@prisma/adapter-pg');
  const pg = (await import('pg')).default;
  // Discrete fields, not connectionString: adapter-pg's own connectToShadowDb spreads {...config, database}
  // and pg lets connectionString win, so its "shadow" DB would be the main DB.
  const u = new URL(url);
  const cfg = {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: decodeURIComponent(u.pathname.slice(1)),
  };
  const admin = async (sql) => {
    const c = new pg.Client(cfg);
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  // adapter-pg 7.10.x throws 'Unsupported column type char' for pg_catalog's "char" (OID 18), which the engine's
  // introspection selects; report it as text (OID 25). (adapter-pg 6.x also needs OID 19 "name".)
  class CharSafePool extends pg.Pool {
    async query(...args) {
      const r = await super.query(...args);
      for (const f of r?.fields ?? []) if (f.dataTypeID === 18 || f.dataTypeID === 19) f.dataTypeID = 25;
      return r;
    }
  }
  const make = (c) => new PrismaPg(new CharSafePool(c), { disposeExternalPool: true });
  const main = make(cfg);
  return {
    provider: main.provider,
    adapterName: main.adapterName,
    connect: () => main.connect(),
    // Own shadow DB: adapter-pg 7.10.1 drops its shadow DB before closing the pool on it, which fails.
    async connectToShadowDb() {
      const name = `prisma_shadow_${process.pid}_${Date.now()}`;
      await admin(`CREATE DATABASE "${name}"`);
      const shadow = await make({ ...cfg, database: name }).connect();
      const dispose = shadow.dispose.bind(shadow);
      shadow.dispose = async () => {
        await dispose();
        await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      };
      return shadow;
    },
  };
}

async function sqliteFactory() {
  const { PrismaBetterSqlite3 } = await import('@prisma/adapter-better-sqlite3');
  const base = new PrismaBetterSqlite3({ url });
  // The engine sends whole migration scripts to the (in-memory) shadow DB through executeRaw;
  // better-sqlite3's prepare() rejects several statements, so fall back to executeScript.
  const multi = (a) => {
    const raw = a.executeRaw.bind(a);
    a.executeRaw = async (q) => {
      try {
        return await raw(q);
      } catch (e) {
        if (!q.args?.length && /more than one statement/.test(e?.message ?? '')) {
          await a.executeScript(q.sql);
          return 0;
        }
        throw e;
      }
    };
    return a;
  };
  return {
    provider: base.provider,
    adapterName: base.adapterName,
    connect: async () => multi(await base.connect()),
    connectToShadowDb: async () => multi(await base.connectToShadowDb()),
  };
}

async function listMigrations(baseDir) {
  const lock = await fs.readFile(path.join(baseDir, 'migration_lock.toml'), 'utf8').catch(() => null);
  const entries = await fs.readdir(baseDir, { withFileTypes: true }).catch(() => []);
  const dirs = [];
  for (const e of entries.filter((d) => d.isDirectory())) {
    const content = await fs.readFile(path.join(baseDir, e.name, 'migration.sql'), 'utf8').then(
      (v) => ({ tag: 'ok', value: v }),
      (err) => ({ tag: 'error', value: err.message }),
    );
    dirs.push({ path: e.name, migrationFile: { path: 'migration.sql', content } });
  }
  dirs.sort((a, b) => a.path.localeCompare(b.path));
  return {
    baseDir: path.resolve(baseDir),
    lockfile: { path: 'migration_lock.toml', content: lock },
    migrationDirectories: dirs,
    shadowDbInitScript: '',
  };
}

const args = process.argv.slice(2);
const cmd = args.shift();
const migrationName = cmd === 'dev' ? args.shift() : undefined;
const fromEmpty = args.includes('--from-empty');
const [schemaPath, migDir] = args.filter((a) => a !== '--from-empty');
const schemaText = await fs.readFile(schemaPath, 'utf8');
const schema = { files: [{ path: schemaPath, content: schemaText }] };
const filters = { externalTables: [], externalEnums: [] };

const adapter = bindMigrationAwareSqlAdapterFactory(url.startsWith('file:') ? await sqliteFactory() : await postgresFactory());
const engine = await runtime.SchemaEngine.new(
  { datamodels: [[schemaPath, schemaText]] },
  (log) => {
    if (process.env.DEBUG_SCHEMA_ENGINE) console.error('[schema-engine]', log);
  },
  adapter,
);
try {
  if (cmd === 'deploy') {
    const r = await engine.applyMigrations({ migrationsList: await listMigrations(migDir), filters });
    console.error(`applied: ${r.appliedMigrationNames.join(', ') || '(none)'}`);
  } else if (cmd === 'dev') {
    const migrationsList = await listMigrations(migDir);
    // apply first: it creates _prisma_migrations (devDiagnostic on a fresh SQLite DB fails with P1014 otherwise)
    await engine.applyMigrations({ migrationsList, filters });
    const diag = await engine.devDiagnostic({ migrationsList, filters });
    if (diag.action.tag === 'reset') throw new Error(`drift, the database needs a reset: ${diag.action.reason}`);
    const out = await engine.createMigration({ draft: false, migrationName, migrationsList, schema, filters });
    if (out.migrationScript === null) console.error('no schema changes');
    else {
      const dir = path.join(migDir, out.generatedMigrationName);
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, `migration.${out.extension}`), out.migrationScript);
      if (!migrationsList.lockfile.content) {
        await fs.writeFile(
          path.join(migDir, 'migration_lock.toml'),
          `# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "${out.connectorType}"\n`,
        );
      }
      const r = await engine.applyMigrations({ migrationsList: await listMigrations(migDir), filters });
      console.error(`created ${out.generatedMigrationName}; applied: ${r.appliedMigrationNames.join(', ')}`);
    }
  } else if (cmd === 'push') {
    const r = await engine.schemaPush({ force: process.env.FORCE === '1', schema, filters });
    console.error(`db push: ${r.executedSteps} steps`, r.warnings.length ? r.warnings : '', r.unexecutable.length ? r.unexecutable : '');
    if (r.unexecutable.length || (r.warnings.length && process.env.FORCE !== '1')) process.exitCode = 1;
  } else if (cmd === 'diff') {
    const from = fromEmpty ? { tag: 'empty' } : { tag: 'migrations', ...(await listMigrations(migDir)) };
    const r = await engine.diff({ from, to: { tag: 'schemaDatamodel', ...schema }, script: true, exitCode: null, filters });
    process.stdout.write(r.stdout ?? '');
  } else if (cmd === 'status') {
    console.log(
      JSON.stringify(
        await engine.diagnoseMigrationHistory({ migrationsList: await listMigrations(migDir), optInToShadowDatabase: false, filters }),
        null,
        2,
      ),
    );
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
} catch (e) {
  console.error('ERROR', e?.message ?? e);
  for (const r of adapter.errorRegistry.registeredErrors) if (r) console.error('  driver error:', r.error?.message ?? r.error);
  process.exitCode = 1;
} finally {
  engine.free?.();
}
// The adapter's pg pool would keep the process alive for its idle timeout (10 s): exit now.
process.exit(process.exitCode ?? 0);
