#!/usr/bin/env node
// Builds the optional OpenBLAS N-API addon (native/blas_addon.c + native/fused.c -> native/build/blas_addon.node).
// Optional by design: when gcc, the Node headers or libopenblas are missing it says so and exits 0,
// and the engine falls back to its wasm matmul kernel. EDGETUNE_NATIVE=0 skips the build.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native', 'blas_addon.c');
const sources = [src, join(root, 'native', 'fused.c')];
const outDir = join(root, 'native', 'build');
const out = join(outDir, 'blas_addon.node');
const nodeInclude = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  '/usr/include/node',
  '/usr/local/include/node',
  join(dirname(process.execPath), '..', 'include', 'node'),
]
  .filter(Boolean)
  .find((d) => existsSync(join(d, 'node_api.h')));
const cblas = [
  '/usr/include/x86_64-linux-gnu/cblas.h',
  '/usr/include/aarch64-linux-gnu/cblas.h',
  '/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h',
  '/usr/include/aarch64-linux-gnu/openblas-pthread/cblas.h',
  '/usr/include/openblas/cblas.h',
  '/usr/include/cblas.h',
  '/opt/homebrew/opt/openblas/include/cblas.h',
  '/usr/local/opt/openblas/include/cblas.h',
].find((f) => existsSync(f));

function skip(why) {
  console.log(
    `[edgetune] native OpenBLAS matmul not built (${why}); the engine will use its wasm kernels. ` +
      'Install libopenblas-dev and run `node packages/engine/scripts/build-native.mjs` to enable it.',
  );
  process.exit(0);
}
if (process.env.EDGETUNE_NATIVE === '0') skip('EDGETUNE_NATIVE=0');
if (!sources.every((f) => existsSync(f))) skip('native/blas_addon.c or native/fused.c missing');
if (!nodeInclude) skip('Node headers (node_api.h) not found');
if (!cblas) skip('cblas.h not found');
mkdirSync(outDir, { recursive: true });
const tmp = join(outDir, `blas_addon.tmp-${process.pid}.node`); // .node: require() picks the loader by extension
const libDir = join(dirname(cblas), '..', 'lib');
const args = [
  '-O3',
  '-std=c11',
  '-Wall',
  '-Wextra',
  '-shared',
  '-fPIC',
  '-fvisibility=hidden',
  '-pthread',
  '-I',
  nodeInclude,
  '-I',
  dirname(cblas),
  ...sources,
  '-o',
  tmp,
  ...(existsSync(libDir) ? ['-L', libDir] : []),
  '-lopenblas',
  '-lm',
  ...(process.platform === 'darwin' ? ['-undefined', 'dynamic_lookup'] : []),
];
try {
  execFileSync(process.env.CC || 'gcc', args, { stdio: 'inherit' });
  // Load it in a child process before installing it: a broken addon must not replace a good one.
  execFileSync(
    process.execPath,
    [
      '-e',
      `const m=require(${JSON.stringify(tmp)});const a=new Float32Array([1,2,3,4]),c=new Float32Array(4);` +
        'm.sgemm(a,0,a,0,c,0,2,2,2,false,false,1,0,0,0);' +
        'if(c.join()!=="7,10,15,22")throw new Error("sgemm self-test gave "+c.join());' +
        'const x=new Float32Array([3,4,0,0]),w=new Float32Array([1,2]),y=new Float32Array(4),r=new Float32Array(2);' +
        'm.rmsNormForward(2,2,0,x,0,w,0,y,0,r,0);' +
        'if(Math.abs(y[0]-3/Math.sqrt(12.5))>1e-6||Math.abs(y[1]-8/Math.sqrt(12.5))>1e-6)throw new Error("rmsNorm self-test gave "+y.join());',
    ],
    { stdio: 'inherit' },
  );
  renameSync(tmp, out);
  console.log(`[edgetune] built ${out}`);
} catch (e) {
  rmSync(tmp, { force: true });
  skip(`build or self-test failed: ${e.message.split('\n')[0]}`);
}
