// packages/engine/scripts/build-native.mjs in each of its variants (into temporary directories, the
// default addon is left alone): OpenBLAS through the system cblas.h, OpenBLAS through its runtime
// library only (EDGETUNE_CBLAS_HEADER=none), and without BLAS (EDGETUNE_BLAS=0). Each addon must load,
// say whether it has BLAS and compute what a float64 reference computes; the engine on the addon
// without BLAS must keep tf.matMul on wasm, run the fused kernels natively and say so.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  attention,
  attentionOps,
  fusedKernelsActive,
  initBackend,
  loraLinear,
  loraLinearOps,
  matmulPath,
  rmsNorm,
  rmsNormOps,
} from '../../packages/engine/src/backend/index.js';
import type { BlasAddon } from '../../packages/engine/src/backend/index.js';
import { maxAbsDiff, REPO_ROOT, rng } from './helpers.js';

const SCRIPT = join(REPO_ROOT, 'packages', 'engine', 'scripts', 'build-native.mjs');
const probe = JSON.parse(execFileSync(process.execPath, [SCRIPT, '--probe'], { encoding: 'utf8' })) as {
  cc: string | null;
  nodeInclude: string | null;
  cblasHeader: string | null;
  openblasRuntime: string | null;
};
const toolchain = !probe.cc ? 'no C compiler (cc, gcc)' : !probe.nodeInclude ? 'no Node headers (node_api.h)' : null;

interface Variant {
  name: string;
  env: Record<string, string>;
  hasBlas: boolean;
  /** Why this machine cannot build it, or null. */
  missing: string | null;
}
const VARIANTS: Variant[] = [
  { name: 'openblas (system headers)', env: {}, hasBlas: true, missing: toolchain ?? (probe.cblasHeader ? null : 'no cblas.h') },
  {
    name: 'openblas runtime (no -dev headers)',
    env: { EDGETUNE_CBLAS_HEADER: 'none' },
    hasBlas: true,
    missing: toolchain ?? (probe.openblasRuntime ? null : 'no libopenblas.so.0'),
  },
  { name: 'fused kernels only (no OpenBLAS: matmul on wasm)', env: { EDGETUNE_BLAS: '0' }, hasBlas: false, missing: toolchain },
];
const skipNote = (v: Variant) => (v.missing ? ` [skipped: ${v.missing} on this machine]` : '');

const root = mkdtempSync(join(tmpdir(), 'edgetune-native-'));
const built = new Map<string, { stdout: string; file: string }>();
const requireAddon = createRequire(import.meta.url);

/** Builds every variant this machine can build, in parallel. */
async function buildAll(): Promise<void> {
  await Promise.all(
    VARIANTS.filter((v) => !v.missing).map(async (v, i) => {
      const out = join(root, `v${i}`);
      const { stdout } = await promisify(execFile)(process.execPath, [SCRIPT], {
        env: { ...process.env, EDGETUNE_NATIVE: '1', EDGETUNE_NATIVE_OUT: out, ...v.env },
        encoding: 'utf8',
      });
      built.set(v.name, { stdout, file: join(out, 'blas_addon.node') });
    }),
  );
}

const randF32 = (n: number, seed: number) => {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r());
};

/** Row-major C = op(A) op(B) in float64. */
function refGemm(a: Float32Array, b: Float32Array, M: number, N: number, K: number, ta: boolean, tb: boolean): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (ta ? a[k * M + i] : a[i * K + k]) * (tb ? b[j * K + k] : b[k * N + j]);
      c[i * N + j] = s;
    }
  return c;
}

/** y = x / sqrt(mean(x^2) + eps) * w per row of x [n, d], in float64. */
function refRmsNorm(x: Float32Array, w: Float32Array, n: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[i * d + j] ** 2;
    const r = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[i * d + j] = x[i * d + j] * r * w[j];
  }
  return y;
}

/** max |a - ref| / (1 + |ref|). */
function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(a.length).toBe(ref.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - ref[i]) / (1 + Math.abs(ref[i])));
  return m;
}

beforeAll(buildAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('build-native.mjs variants', () => {
  for (const v of VARIANTS) {
    it.skipIf(v.missing !== null)(`${v.name}: builds, says so in one line, loads, hasBlas=${v.hasBlas}${skipNote(v)}`, () => {
      const { stdout, file } = built.get(v.name)!;
      const lines = stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0].startsWith(`[edgetune] native addon: ${v.name} -> ${file} in `)).toBe(true);
      const addon = requireAddon(file) as BlasAddon;
      expect(addon.hasBlas).toBe(v.hasBlas);
      addon.setFusedThreads!(2); // the plain C GEMM splits its rows over the pool
      // every transpose; sizes past the cache blocks of native/sgemm_ref.c
      const [M, N, K] = [67, 300, 150];
      const a = randF32(M * K, 1),
        b = randF32(K * N, 2);
      for (const [ta, tb] of [
        [false, false],
        [false, true],
        [true, false],
        [true, true],
      ]) {
        const c = new Float32Array(M * N);
        addon.sgemm(a, 0, b, 0, c, 0, M, N, K, ta, tb, 1, 0, 0, 0);
        expect(relErr(c, refGemm(a, b, M, N, K, ta, tb)), `sgemm ${ta} ${tb}`).toBeLessThan(1e-5);
      }
      const [n, d] = [40, 96];
      const x = randF32(n * d, 3),
        w = randF32(d, 4),
        y = new Float32Array(n * d),
        rstd = new Float32Array(n);
      addon.rmsNormForward!(n, d, 1e-5, x, 0, w, 0, y, 0, rstd, 0);
      expect(relErr(y, refRmsNorm(x, w, n, d, 1e-5))).toBeLessThan(1e-5);
    });
  }

  it('EDGETUNE_NATIVE=0 builds nothing and says why', () => {
    const out = join(root, 'none');
    const stdout = execFileSync(process.execPath, [SCRIPT], {
      env: { ...process.env, EDGETUNE_NATIVE: '0', EDGETUNE_NATIVE_OUT: out },
      encoding: 'utf8',
    });
    expect(stdout.trim()).toMatch(/^\[edgetune\] native addon not built \(EDGETUNE_NATIVE=0\)/);
    expect(() => requireAddon(join(out, 'blas_addon.node'))).toThrow();
  });
});

const noBlas = VARIANTS[2];
describe.skipIf(noBlas.missing !== null)(`the engine on the addon built without OpenBLAS${skipNote(noBlas)}`, () => {
  const prev = process.env.EDGETUNE_NATIVE_ADDON;
  beforeAll(() => {
    process.env.EDGETUNE_NATIVE_ADDON = built.get(noBlas.name)!.file; // read on the first load, below
  });
  afterAll(async () => {
    if (prev === undefined) delete process.env.EDGETUNE_NATIVE_ADDON;
    else process.env.EDGETUNE_NATIVE_ADDON = prev;
  });

  it('keeps tf.matMul on wasm, runs the fused kernels natively and says so', async () => {
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let info: Awaited<ReturnType<typeof initBackend>>;
    let lines: string[];
    try {
      info = await initBackend({ backend: 'wasm', blasThreads: 2 });
      lines = spy.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('[edgetune]'));
    } finally {
      spy.mockRestore();
    }
    expect(info).toMatchObject({ backend: 'wasm', matmul: 'wasm-fastmm', fused: 'native' });
    expect(matmulPath(info)).toBe('wasm-fastmm fused=native');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\[edgetune\] backend=wasm matmul=wasm-fastmm fused=native \(native addon: .+built without OpenBLAS \(fused kernels only\)\) kernels=\S*BatchMatMul/,
    );
    expect(fusedKernelsActive()).toBe(true);
  });

  it('its fused kernels (RMSNorm, causal attention, LoRA linear) match the TF.js compositions', () => {
    expect(fusedKernelsActive()).toBe(true);
    const t = (shape: number[], seed: number) =>
      tf.tensor(
        randF32(
          shape.reduce((a, b) => a * b, 1),
          seed,
        ),
        shape,
      );
    const check = (fused: () => tf.Tensor, ops: () => tf.Tensor, what: string) => {
      const a = tf.tidy(() => fused().dataSync());
      const b = tf.tidy(() => ops().dataSync());
      expect(maxAbsDiff(a, b) / (1 + Math.max(...Array.from(b, Math.abs))), what).toBeLessThan(1e-5);
    };
    const x = t([24, 64], 5) as tf.Tensor2D,
      w = t([64], 6) as tf.Tensor1D;
    check(
      () => rmsNorm(x, w, 1e-5),
      () => rmsNormOps(x, w, 1e-5),
      'rmsNorm',
    );
    const [B, H, KV, T, dh] = [2, 4, 2, 40, 16];
    const q = t([B, H, T, dh], 7) as tf.Tensor4D,
      k = t([B, KV, T, dh], 8) as tf.Tensor4D,
      v = t([B, KV, T, dh], 9) as tf.Tensor4D;
    const o = { scale: 1 / Math.sqrt(dh) };
    check(
      () => attention(q, k, v, o),
      () => attentionOps(q, k, v, o),
      'attention',
    );
    const [n, inDim, outDim, r] = [64, 128, 96, 8];
    const xl = t([n, inDim], 10) as tf.Tensor2D,
      wl = t([outDim, inDim], 11) as tf.Tensor2D,
      al = t([r, inDim], 12) as tf.Tensor2D,
      bl = t([outDim, r], 13) as tf.Tensor2D;
    const lo = { scale: 2, dropout: 0 };
    check(
      () => loraLinear(xl, wl, al, bl, lo),
      () => loraLinearOps(xl, wl, al, bl, lo),
      'loraLinear',
    );
    tf.dispose([x, w, q, k, v, xl, wl, al, bl]);
  });

  it('native: false falls back to the compositions and says fused=js', async () => {
    const info = await initBackend({ backend: 'wasm', native: false, quiet: true });
    expect(info).toMatchObject({ matmul: 'wasm-fastmm', fused: 'js' });
    expect(fusedKernelsActive()).toBe(false);
  });
});
