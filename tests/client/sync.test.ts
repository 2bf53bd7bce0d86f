// The committed client types (packages/client/src/generated/schema.ts) must be what the generator makes from
// the committed openapi/openapi.json: regenerate with `npm run client:generate` after `npm run openapi`.
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/service.js';

describe('generated client types', () => {
  it('packages/client/src/generated/schema.ts equals a fresh generation from openapi/openapi.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgetune-client-'));
    try {
      const out = join(dir, 'schema.ts');
      await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'packages', 'client', 'scripts', 'generate.mjs'), '--out', out]);
      const fresh = readFileSync(out, 'utf8');
      expect(fresh).toContain('export interface paths');
      const committed = readFileSync(join(REPO_ROOT, 'packages', 'client', 'src', 'generated', 'schema.ts'), 'utf8');
      expect(committed === fresh, 'stale client types: run `npm run client:generate`').toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
