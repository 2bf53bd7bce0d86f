#!/usr/bin/env node
// Builds the optional OpenBLAS N-API addon (native/blas_addon.c -> native/build/blas_addon.node).
// Optional by design: when gcc, the Node headers or libopenblas are missing it says so and exits 0,
// and the engine falls back to its wasm matmul kernel.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native', 'blas_addon.c');
const outDir = join(root, 'native', 'build');
const out = join(outDir, 'blas_addon.node');
const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  '/usr/include/node', '/usr/local/include/node', join(dirname(process.execPath), '..', 'include', 'node')]
  .filter(Boolean).find((d) => existsSync(join(d, 'node_api.h')));
const cblas = ['/usr/include/x86_64-linux-gnu/cblas.h', '/usr/include/aarch64-linux-gnu/cblas.h', '/usr/include/cblas.h',
  '/usr/include/openblas/cblas.h'].find((f) => existsSync(f));

function skip(why) {
  console.log(`[edgetune] native OpenBLAS matmul not built (${why}); the engine will use its wasm kernels. ` +
    'Install libopenblas-dev and run `npm run build:native -w @edgetune/engine` to enable it.');
  process.exit(0);
}
if (!existsSync(src)) skip('no native/blas_addon.c');
if (!nodeInclude) skip('Node headers (node_api.h) not found');
if (!cblas) skip('cblas.h not found');
mkdirSync(outDir, { recursive: true });
try {
  execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-I', nodeInclude, '-I', dirname(cblas), src, '-o', out, '-lopenblas'],
    { stdio: 'inherit' });
  console.log(`[edgetune] built ${out}`);
} catch (e) {
  skip(`gcc failed: ${e.message}`);
}
