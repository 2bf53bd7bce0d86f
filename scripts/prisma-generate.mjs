#!/usr/bin/env node
// Generates the Prisma client into packages/store/src/generated/prisma (run by `prepare`, before `tsc -b`).
// Prisma 7's CLI downloads a schema-engine binary before any command, which fails offline; generation
// itself runs on bundled WASM, so pointing PRISMA_SCHEMA_ENGINE_BINARY at any existing file is enough.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
let cli;
try {
  cli = join(dirname(require.resolve('prisma/package.json')), 'build', 'index.js');
} catch {
  if (existsSync(join(root, 'packages', 'store', 'src', 'generated', 'prisma', 'client.ts'))) {
    console.error('[edgetune] prisma CLI not installed; keeping the generated client');
    process.exit(0);
  }
  console.error('[edgetune] prisma CLI not installed and no generated client: run npm ci (with dev dependencies)');
  process.exit(1);
}
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) env.PRISMA_SCHEMA_ENGINE_BINARY = existsSync('/bin/false') ? '/bin/false' : process.execPath;
const r = spawnSync(process.execPath, [cli, 'generate'], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
