#!/usr/bin/env node
// Builds the native N-API addon (native/blas_addon.c + native/fused.c -> native/build/blas_addon.node)
// in the best variant this machine allows, and prints one line naming it:
//   openblas (system headers)                          cblas.h (libopenblas-dev) found: BLAS matmul + fused kernels
//   openblas runtime (no -dev headers)                 only libopenblas.so.0: same addon, declared by native/cblas_min.h
//   fused kernels only (no OpenBLAS: matmul on wasm)   no OpenBLAS: the fused kernels with native/sgemm_ref.c's GEMM
// A variant that fails to compile or to pass the self-test falls through to the next one. Optional by
// design: without a C compiler or the Node headers it says why and exits 0, and the engine runs its
// wasm/JS kernels.
// Environment:
//   EDGETUNE_NATIVE=0          build nothing
//   EDGETUNE_BLAS=0            skip the OpenBLAS variants (build the fused kernels only)
//   EDGETUNE_CBLAS_HEADER=none ignore the system cblas.h (as on a machine without libopenblas-dev);
//                              =PATH uses that cblas.h
//   EDGETUNE_OPENBLAS_LIB=PATH the OpenBLAS runtime to link when there is no cblas.h (default: searched,
//                              then `ldconfig -p`)
//   EDGETUNE_NATIVE_OUT=DIR    write DIR/blas_addon.node instead of native/build/blas_addon.node
//   CC                         the compiler (default: cc, then gcc)
// `--probe` prints what this machine offers as JSON ({ cc, nodeInclude, cblasHeader, openblasRuntime },
// null where missing) and builds nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = (f) => join(root, 'native', f);
const sources = [native('blas_addon.c'), native('fused.c'), native('frozen.c')];
const outDir = process.env.EDGETUNE_NATIVE_OUT || join(root, 'native', 'build');
const out = join(outDir, 'blas_addon.node');
const started = Date.now();

function skip(why, hint = true) {
  const how = hint
    ? ' Install a C compiler (and libopenblas-dev for the fast matmul) and run `node packages/engine/scripts/build-native.mjs`.'
    : '';
  console.log(`[edgetune] native addon not built (${why}); the engine will use its wasm and JS kernels.${how}`);
  process.exit(0);
}

/** The first command of `names` that runs (`--version`), or null. */
function findCompiler(names) {
  for (const cc of names) {
    try {
      execFileSync(cc, ['--version'], { stdio: 'ignore' });
      return cc;
    } catch {
      /* not installed */
    }
  }
  return null;
}

function findNodeInclude() {
  return [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
    join(dirname(process.execPath), '..', 'include', 'node'),
  ]
    .filter(Boolean)
    .find((d) => existsSync(join(d, 'node_api.h')));
}

function findCblasHeader() {
  const env = process.env.EDGETUNE_CBLAS_HEADER;
  if (env === 'none') return null;
  if (env) return existsSync(env) ? env : null;
  return [
    '/usr/include/x86_64-linux-gnu/cblas.h',
    '/usr/include/aarch64-linux-gnu/cblas.h',
    '/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h',
    '/usr/include/aarch64-linux-gnu/openblas-pthread/cblas.h',
    '/usr/include/openblas/cblas.h',
    '/usr/include/cblas.h',
    '/opt/homebrew/opt/openblas/include/cblas.h',
    '/usr/local/opt/openblas/include/cblas.h',
  ].find((f) => existsSync(f));
}

/** The OpenBLAS runtime library (libopenblas.so.0) in the usual places or the loader cache, or null. */
function findOpenblasRuntime() {
  if (process.env.EDGETUNE_OPENBLAS_LIB) return existsSync(process.env.EDGETUNE_OPENBLAS_LIB) ? process.env.EDGETUNE_OPENBLAS_LIB : null;
  const dirs = ['x86_64-linux-gnu', 'aarch64-linux-gnu'].flatMap((a) => [`/usr/lib/${a}`, `/usr/lib/${a}/openblas-pthread`]);
  const found = [...dirs, '/usr/lib64', '/usr/lib', '/usr/local/lib'].map((d) => join(d, 'libopenblas.so.0')).find((f) => existsSync(f));
  if (found) return found;
  try {
    const cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return cache.match(/\slibopenblas\.so\.0 \([^)]*\) => (\S+)/)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** The variants to try, best first: { name, hasBlas, flags (defines and sources), link }. */
function variants() {
  const list = [];
  if (process.env.EDGETUNE_BLAS !== '0') {
    const header = findCblasHeader();
    const runtime = findOpenblasRuntime(); // also the fallback when the cblas.h build fails
    if (header) {
      const libDir = join(dirname(header), '..', 'lib');
      list.push({
        name: 'openblas (system headers)',
        hasBlas: true,
        flags: ['-I', dirname(header)],
        link: [...(existsSync(libDir) ? ['-L', libDir] : []), '-lopenblas'],
      });
    }
    if (runtime) {
      const dir = dirname(runtime);
      list.push({
        name: 'openblas runtime (no -dev headers)',
        hasBlas: true,
        flags: ['-DEDGETUNE_CBLAS_MIN'],
        link: process.platform === 'darwin' ? [runtime] : ['-L', dir, `-l:${basename(runtime)}`, `-Wl,-rpath,${dir}`],
      });
    }
  }
  list.push({
    name: 'fused kernels only (no OpenBLAS: matmul on wasm)',
    hasBlas: false,
    flags: ['-DEDGETUNE_NO_BLAS', native('sgemm_ref.c')],
    link: [],
  });
  return list;
}

// Loads the addon in a child process: sgemm, RMSNorm and hasBlas must come out as expected.
function selfTest(file, hasBlas) {
  execFileSync(
    process.execPath,
    [
      '-e',
      `const m=require(${JSON.stringify(file)});if(m.hasBlas!==${hasBlas})throw new Error("hasBlas is "+m.hasBlas);` +
        'const a=new Float32Array([1,2,3,4]),c=new Float32Array(4);' +
        'm.sgemm(a,0,a,0,c,0,2,2,2,false,false,1,0,0,0);' +
        'if(c.join()!=="7,10,15,22")throw new Error("sgemm self-test gave "+c.join());' +
        'const x=new Float32Array([3,4,0,0]),w=new Float32Array([1,2]),y=new Float32Array(4),r=new Float32Array(2);' +
        'm.rmsNormForward(2,2,0,x,0,w,0,y,0,r,0);' +
        'if(Math.abs(y[0]-3/Math.sqrt(12.5))>1e-6||Math.abs(y[1]-8/Math.sqrt(12.5))>1e-6)throw new Error("rmsNorm self-test gave "+y.join());',
    ],
    { stdio: ['ignore', 'inherit', 'pipe'] },
  );
}

/** Compiles and self-tests one variant into `tmp`; returns null or why it failed. */
function build(cc, nodeInclude, v, tmp) {
  const args = [
    ...['-O3', '-std=c11', '-Wall', '-Wextra', '-shared', '-fPIC', '-fvisibility=hidden', '-pthread'],
    ...['-I', nodeInclude, ...v.flags, ...sources, '-o', tmp, ...v.link, '-lm'],
    ...(process.platform === 'darwin' ? ['-undefined', 'dynamic_lookup'] : []),
  ];
  try {
    execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    selfTest(tmp, v.hasBlas);
    return null;
  } catch (e) {
    rmSync(tmp, { force: true });
    const lines = (e.stderr?.toString() ?? '').split('\n').map((l) => l.trim());
    return lines.find((l) => /error/i.test(l)) || lines.filter(Boolean).at(-1) || e.message.split('\n')[0];
  }
}

if (process.argv.includes('--probe')) {
  const cc = findCompiler(process.env.CC ? [process.env.CC] : ['cc', 'gcc']);
  const cblasHeader = findCblasHeader() ?? null;
  const openblasRuntime = findOpenblasRuntime();
  console.log(JSON.stringify({ cc, nodeInclude: findNodeInclude() ?? null, cblasHeader, openblasRuntime }));
  process.exit(0);
}
if (process.env.EDGETUNE_NATIVE === '0') skip('EDGETUNE_NATIVE=0', false);
if (!sources.every((f) => existsSync(f))) skip('native/blas_addon.c or native/fused.c missing');
const cc = findCompiler(process.env.CC ? [process.env.CC] : ['cc', 'gcc']);
if (!cc) skip(`no C compiler (${process.env.CC || 'cc, gcc'}) found`);
const nodeInclude = findNodeInclude();
if (!nodeInclude) skip('Node headers (node_api.h) not found');
mkdirSync(outDir, { recursive: true });
const tmp = join(outDir, `blas_addon.tmp-${process.pid}.node`); // .node: require() picks the loader by extension
const failures = [];
for (const v of variants()) {
  const why = build(cc, nodeInclude, v, tmp);
  if (why) {
    failures.push(`${v.name}: ${why}`);
    continue;
  }
  renameSync(tmp, out); // only a self-tested addon replaces the previous one
  const also = failures.length ? ` (not built: ${failures.join('; ')})` : '';
  console.log(`[edgetune] native addon: ${v.name} -> ${out} in ${((Date.now() - started) / 1000).toFixed(1)} s${also}`);
  process.exit(0);
}
skip(`build or self-test failed: ${failures.join('; ')}`);
