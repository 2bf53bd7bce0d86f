// The migrations stay in the standard prisma/migrations/<timestamp>_<name>/migration.sql form that
// `prisma migrate deploy` applies, and stay appliable by scripts/prisma-wasm-migrate.mjs: Prisma's WASM schema
// engine splits a script into statements at every ';', even inside a comment, so a comment holding one
// breaks the shadow-database apply of `diff` and `dev` (a syntax error at the comment's next word).
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const DIR = join(import.meta.dirname, '..', '..', 'prisma', 'migrations');
const migrations = readdirSync(DIR, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

/** Lines of `sql` whose comment part (after `--`, or inside a block comment) holds a ';'. */
function semicolonsInComments(sql: string): number[] {
  const bad: number[] = [];
  let inBlock = false;
  sql.split('\n').forEach((line, i) => {
    let rest = line;
    for (;;) {
      if (inBlock) {
        const end = rest.indexOf('*/');
        const body = end < 0 ? rest : rest.slice(0, end);
        if (body.includes(';')) bad.push(i + 1);
        if (end < 0) return;
        inBlock = false;
        rest = rest.slice(end + 2);
        continue;
      }
      const line2 = rest.indexOf('--'),
        block = rest.indexOf('/*');
      if (line2 >= 0 && (block < 0 || line2 < block)) {
        if (rest.slice(line2).includes(';')) bad.push(i + 1);
        return;
      }
      if (block < 0) return;
      inBlock = true;
      rest = rest.slice(block + 2);
    }
  });
  return [...new Set(bad)];
}

describe('prisma/migrations', () => {
  it('are <14-digit timestamp>_<name> folders with a migration.sql, in order, and a lock file for postgresql', () => {
    expect(migrations.length).toBeGreaterThanOrEqual(4);
    for (const m of migrations) {
      expect(m).toMatch(/^\d{14}_[a-z0-9_]+$/);
      expect(readFileSync(join(DIR, m, 'migration.sql'), 'utf8').trim().length).toBeGreaterThan(0);
    }
    expect(readFileSync(join(DIR, 'migration_lock.toml'), 'utf8')).toMatch(/provider = "postgresql"/);
  });

  it('hold no ";" inside a comment', () => {
    for (const m of migrations) expect(semicolonsInComments(readFileSync(join(DIR, m, 'migration.sql'), 'utf8')), m).toEqual([]);
  });

  it('the check finds a ";" in a line comment and in a block comment', () => {
    expect(semicolonsInComments('-- a; b\nSELECT 1;\n/* x\n y; */ SELECT 2;\n/* ok */ SELECT 3; -- fine\n')).toEqual([1, 4]);
  });
});
