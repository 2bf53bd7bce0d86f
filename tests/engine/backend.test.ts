// Kernel overrides of packages/engine/src/backend, each checked against an independent float64
// JS reference. Runs on wasm (native OpenBLAS when the addon is built, and the fastmm fallback) and cpu.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  backendInfo,
  initBackend,
  loadBlasAddon,
  loadNativeAddon,
  matmulPath,
  measureSgemmPeak,
  plannerSgemmPeak,
  recordSgemmPeak,
  SGEMM_MEMORY_MS,
  memoryStats,
  sparseSoftmaxCrossEntropy,
  sparseSoftmaxCrossEntropyOps,
  XENT_KERNEL,
} from '../../packages/engine/src/backend/index.js';
import { rng } from './helpers.js';

const hasAddon = loadBlasAddon() !== null;
/** The addon loads, with or without OpenBLAS (its fused kernels run either way). */
const hasNative = loadNativeAddon() !== null;

// ---- deterministic data and float64 references ----

interface Arr {
  data: Float64Array;
  shape: number[];
}
function randArr(shape: number[], seed: number, scale = 1): Arr {
  const r = rng(seed),
    n = shape.reduce((a, b) => a * b, 1);
  return { data: Float64Array.from({ length: n }, () => r() * scale), shape };
}
const toTensor = (a: Arr) => tf.tensor(Float32Array.from(a.data), a.shape, 'float32');
/** Values as they are stored in float32 (so references see the same inputs as the kernels). */
const f32 = (a: Arr): Arr => ({ data: Float64Array.from(Float32Array.from(a.data)), shape: a.shape });

/** Batched matmul with NumPy broadcasting of the leading dims, straight from the definition. */
function refMatMul(a: Arr, b: Arr, ta: boolean, tb: boolean): Arr {
  const ar = a.shape.length,
    br = b.shape.length;
  const [aR, aC] = a.shape.slice(-2),
    [bR, bC] = b.shape.slice(-2);
  const M = ta ? aC : aR,
    K = ta ? aR : aC,
    N = tb ? bR : bC;
  expect(tb ? bC : bR).toBe(K);
  const rank = Math.max(ar, br) - 2;
  const pad = (s: number[]) => [...Array(rank - (s.length - 2)).fill(1), ...s.slice(0, -2)];
  const oa = pad(a.shape),
    ob = pad(b.shape);
  const outer = oa.map((d, i) => Math.max(d, ob[i]));
  const batch = outer.reduce((x, y) => x * y, 1);
  const out = new Float64Array(batch * M * N);
  for (let o = 0; o < batch; o++) {
    let rem = o,
      ia = 0,
      ib = 0,
      sa = 1,
      sb = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const c = rem % outer[d];
      rem = Math.floor(rem / outer[d]);
      ia += (oa[d] === 1 ? 0 : c) * sa;
      sa *= oa[d];
      ib += (ob[d] === 1 ? 0 : c) * sb;
      sb *= ob[d];
    }
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a.data[ia * aR * aC + (ta ? k * aC + i : i * aC + k)];
          const bv = b.data[ib * bR * bC + (tb ? j * bC + k : k * bC + j)];
          s += av * bv;
        }
        out[o * M * N + i * N + j] = s;
      }
    }
  }
  return { data: out, shape: [...outer, M, N] };
}

function transposeLast(a: Arr): Arr {
  const [R, C] = a.shape.slice(-2),
    batch = a.data.length / (R * C);
  const out = new Float64Array(a.data.length);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < R; i++)
      for (let j = 0; j < C; j++) {
        out[b * R * C + j * R + i] = a.data[b * R * C + i * C + j];
      }
  return { data: out, shape: [...a.shape.slice(0, -2), C, R] };
}

function expectClose(t: tf.Tensor, ref: Arr, tol: number): void {
  expect(t.shape).toEqual(ref.shape);
  const v = t.dataSync();
  let worst = 0,
    at = -1;
  for (let i = 0; i < ref.data.length; i++) {
    const e = Math.abs(v[i] - ref.data[i]) / (1 + Math.abs(ref.data[i]));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  expect(worst, `worst error at flat index ${at}: got ${v[at]}, want ${ref.data[at]}`).toBeLessThanOrEqual(tol);
}

// ---- matmul cases: logical (untransposed) shapes; transposed operands swap their last two dims ----

const MM_CASES: Array<[string, number[], number[]]> = [
  ['2D', [3, 5], [5, 7]],
  ['batched 3D', [4, 3, 5], [4, 5, 7]],
  ['broadcast A batch 1', [1, 3, 5], [4, 5, 7]],
  ['broadcast B batch 1', [4, 3, 5], [1, 5, 7]],
  ['3D x 2D', [4, 3, 5], [5, 7]],
  ['2D x 3D', [3, 5], [4, 5, 7]],
  ['rank 4', [2, 3, 3, 5], [2, 3, 5, 7]],
  ['rank 4 general broadcast', [2, 1, 3, 5], [1, 3, 5, 7]],
  ['larger odd', [3, 37, 129], [3, 129, 65]],
];
const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];
const swapLast = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];

function checkMatMuls(seed: number): void {
  for (const [name, as, bs] of MM_CASES) {
    for (const [ta, tb] of TRANSPOSES) {
      const a = f32(randArr(ta ? swapLast(as) : as, seed++)),
        b = f32(randArr(tb ? swapLast(bs) : bs, seed++));
      const ref = refMatMul(a, b, ta, tb);
      tf.tidy(() => {
        const c = tf.matMul(toTensor(a), toTensor(b), ta, tb);
        try {
          expectClose(c, ref, 1e-5);
        } catch (e) {
          throw new Error(`${name} ta=${ta} tb=${tb}: ${(e as Error).message}`);
        }
      });
    }
  }
}

function checkMatMulGrads(seed: number): void {
  const cases: Array<[number[], number[]]> = [
    [
      [3, 5],
      [5, 7],
    ],
    [
      [4, 3, 5],
      [4, 5, 7],
    ],
    [
      [2, 2, 6, 4],
      [2, 2, 4, 6],
    ],
  ];
  for (const [as, bs] of cases) {
    for (const [ta, tb] of TRANSPOSES) {
      const a = f32(randArr(ta ? swapLast(as) : as, seed++)),
        b = f32(randArr(tb ? swapLast(bs) : bs, seed++));
      const w = f32(randArr([...as.slice(0, -2), as[as.length - 2], bs[bs.length - 1]], seed++)); // dL/dC
      // C = op(A) op(B): dop(A) = W op(B)^T, dop(B) = op(A)^T W; dX = dop(X)^T when X is transposed.
      const dOpA = refMatMul(w, b, false, !tb),
        dOpB = refMatMul(a, w, !ta, false);
      const dA = ta ? transposeLast(dOpA) : dOpA,
        dB = tb ? transposeLast(dOpB) : dOpB;
      tf.tidy(() => {
        const W = toTensor(w);
        const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), W)))([toTensor(a), toTensor(b)]);
        expectClose(ga, dA, 1e-5);
        expectClose(gb, dB, 1e-5);
      });
    }
  }
}

function checkSegmentSum(): void {
  // Embedding backward: d/dE sum(gather(E, idx) * W) scatters the rows of W onto E's rows.
  const V = 11,
    d = 5,
    idx = [0, 3, 3, 10, 7, 3];
  const w = f32(randArr([idx.length, d], 77));
  const ref = new Float64Array(V * d);
  idx.forEach((r, i) => {
    for (let j = 0; j < d; j++) ref[r * d + j] += w.data[i * d + j];
  });
  tf.tidy(() => {
    const E = toTensor(f32(randArr([V, d], 78)));
    const g = tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tf.tensor1d(idx, 'int32')), toTensor(w))))(E);
    expectClose(g, { data: ref, shape: [V, d] }, 1e-6);
    // Direct call, int32 data, 2-D rows.
    const x = tf.tensor2d(
      [
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
      ],
      [4, 2],
      'int32',
    );
    const s = tf.unsortedSegmentSum(x, tf.tensor1d([2, 0, 2, 2], 'int32'), 3);
    expect(s.dtype).toBe('int32');
    expect(s.arraySync()).toEqual([
      [3, 4],
      [0, 0],
      [13, 16],
    ]);
  });
}

/** Float64 reference loss and gradient of the mean sparse softmax cross-entropy. */
function refXent(z: Arr, labels: number[]): { loss: number; grad: Arr } {
  const [N, V] = z.shape;
  const count = labels.filter((y) => y !== -100).length;
  const grad = new Float64Array(N * V);
  let sum = 0;
  for (let i = 0; i < N; i++) {
    if (labels[i] === -100) continue;
    const row = z.data.subarray(i * V, (i + 1) * V);
    const m = Math.max(...row);
    const se = row.reduce((s, v) => s + Math.exp(v - m), 0);
    const lse = m + Math.log(se);
    sum += lse - row[labels[i]];
    for (let j = 0; j < V; j++) grad[i * V + j] = (Math.exp(row[j] - lse) - (j === labels[i] ? 1 : 0)) / count;
  }
  return { loss: count ? sum / count : 0, grad: { data: grad, shape: [N, V] } };
}

function checkXent(fn: typeof sparseSoftmaxCrossEntropy = sparseSoftmaxCrossEntropy, checksLabelRange = true): void {
  const cases: Array<[number, number, number, (i: number) => number]> = [
    [9, 13, 1, (i) => (i % 4 === 1 ? -100 : (i * 5) % 13)], // some ignored rows
    [6, 1000, 12, (i) => (i * 397) % 1000], // large logits: needs the max shift
    [4, 7, 1, () => -100], // all ignored: loss 0, gradient 0
  ];
  let seed = 500;
  for (const [N, V, scale, label] of cases) {
    const z = f32(randArr([N, V], seed++, scale));
    const labels = Array.from({ length: N }, (_, i) => label(i));
    const ref = refXent(z, labels);
    tf.tidy(() => {
      const y = tf.tensor1d(labels, 'int32');
      const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => fn(x as tf.Tensor2D, y))([toTensor(z)]);
      expect(value.shape).toEqual([]);
      expect(Math.abs(value.dataSync()[0] - ref.loss)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(ref.loss)));
      expectClose(grads[0], ref.grad, 2e-6);
    });
  }
  // Inside variableGrads (the optimizer path); float32 labels are accepted.
  tf.tidy(() => {
    const z = f32(randArr([5, 6], 9)),
      labels = [1, 2, -100, 5, 0];
    const v = tf.variable(toTensor(z));
    const { value, grads } = tf.variableGrads(() => fn(v as tf.Tensor2D, tf.tensor1d(labels, 'float32')), [v]);
    const ref = refXent(z, labels);
    expect(Math.abs(value.dataSync()[0] - ref.loss)).toBeLessThanOrEqual(1e-5);
    expectClose(grads[v.name], ref.grad, 2e-6);
    v.dispose();
  });
  if (checksLabelRange) {
    expect(() => tf.tidy(() => fn(tf.zeros([2, 3]) as tf.Tensor2D, tf.tensor1d([0, 3], 'int32')))).toThrow(/outside/);
  }
  expect(() => tf.tidy(() => fn(tf.zeros([2, 3]) as tf.Tensor2D, tf.tensor1d([0], 'int32')))).toThrow(/labels must be/);
}

function checkFusedMatMul(): void {
  const a = f32(randArr([2, 3, 5], 31)),
    b = f32(randArr([2, 7, 5], 32)),
    bias = f32(randArr([7], 33));
  const mm = refMatMul(a, b, false, true);
  const ref = { data: mm.data.map((v, i) => Math.max(0, v + bias.data[i % 7])), shape: mm.shape };
  tf.tidy(() => {
    const c = tf.fused.matMul({
      a: toTensor(a) as tf.Tensor3D,
      b: toTensor(b) as tf.Tensor3D,
      transposeB: true,
      bias: toTensor(bias),
      activation: 'relu',
    });
    expectClose(c, ref, 1e-5);
  });
}

// ---- suites ----

describe('backend: wasm + native OpenBLAS', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', native: true, quiet: true }); // plannerSgemmPeak runs without the addon too
  });

  it.skipIf(!hasAddon)('initBackend asserts wasm, reports openblas and our kernels, and is idempotent', async () => {
    const info = await initBackend({ backend: 'wasm', native: true, quiet: true });
    expect(tf.getBackend()).toBe('wasm');
    expect(info.backend).toBe('wasm');
    expect(info.matmul).toBe('openblas');
    expect(info.fused).toBe('native');
    expect(matmulPath(info)).toBe(`openblas(${info.blasThreads} threads)`);
    expect(info.blasThreads).toBeGreaterThanOrEqual(1);
    expect(info.simd).toBeTypeOf('boolean');
    for (const k of ['BatchMatMul', 'UnsortedSegmentSum', 'Identity', XENT_KERNEL]) expect(info.kernels).toContain(k);
    expect(await initBackend({ backend: 'wasm', native: true, quiet: true })).toBe(info);
    expect(backendInfo()).toBe(info);
  });
  it.skipIf(!hasAddon)('matMul: all transposes x 2D/batched/broadcast/rank 4 match the reference', () => checkMatMuls(1000));
  it.skipIf(!hasAddon)('matMul gradients match the reference', () => checkMatMulGrads(2000));
  it.skipIf(!hasAddon)('matMul stays correct when allocating its output grows the wasm heap', () => {
    // Heap views taken before makeOutput would be detached by the growth; sample entries vs reference.
    const heapBefore = memoryStats().wasmHeapBytes!;
    const M = 1500,
      K = 24,
      N = 1500 + Math.ceil(heapBefore / 4 / 1500); // output alone > the heap
    const a = f32(randArr([M, K], 71)),
      b = f32(randArr([N, K], 72));
    tf.tidy(() => {
      const c = tf.matMul(toTensor(a), toTensor(b), false, true).dataSync();
      expect(memoryStats().wasmHeapBytes!).toBeGreaterThan(heapBefore);
      const r = rng(73);
      for (let s = 0; s < 300; s++) {
        const i = Math.floor(((r() + 1) / 2) * M),
          j = Math.floor(((r() + 1) / 2) * N);
        let want = 0;
        for (let k = 0; k < K; k++) want += a.data[i * K + k] * b.data[j * K + k];
        expect(Math.abs(c[i * N + j] - want)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)));
      }
    });
  });
  it.skipIf(!hasAddon)('fused.matMul (bias + relu, transposeB, batched)', () => checkFusedMatMul());
  it.skipIf(!hasAddon)('sparseSoftmaxCrossEntropy loss and gradient (native loops)', () => checkXent());
  it.skipIf(!hasAddon)('measureSgemmPeak uses OpenBLAS', () => {
    const p = measureSgemmPeak({ n: 128, seconds: 0.05, threads: 1 });
    expect(p.source).toBe('openblas');
    expect(p.threads).toBe(1);
    expect(p.gflops).toBeGreaterThan(0.1);
    expect(loadBlasAddon()!.getThreads()).toBe(backendInfo()!.blasThreads); // restored
  });
  it('plannerSgemmPeak keeps the best recent reading (a probe under load only under-reads) and forgets old ones (the machine drifts)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgetune-peak-'));
    const prev = process.env.EDGETUNE_CACHE_DIR;
    process.env.EDGETUNE_CACHE_DIR = dir;
    try {
      const first = plannerSgemmPeak(0.02);
      const file = join(dir, 'edgetune-sgemm-peak.json');
      const seen = JSON.parse(readFileSync(file, 'utf8')) as Record<string, [number, number][]>;
      const [key] = Object.keys(seen);
      expect(seen[key]).toHaveLength(1);
      expect(seen[key][0][0]).toBe(first.gflops);
      expect(Math.abs(seen[key][0][1] - Date.now())).toBeLessThan(60_000);
      // a better reading a minute ago wins over this probe
      writeFileSync(file, JSON.stringify({ [key]: [[first.gflops * 1000, Date.now() - 60_000]] }));
      expect(plannerSgemmPeak(0.02).gflops).toBe(first.gflops * 1000);
      // ... but not once it is older than the window: the probe's own reading counts
      writeFileSync(file, JSON.stringify({ [key]: [[first.gflops * 1000, Date.now() - SGEMM_MEMORY_MS - 1000]] }));
      const fresh = plannerSgemmPeak(0.02);
      expect(fresh.gflops).toBeLessThan(first.gflops * 100);
      expect(JSON.parse(readFileSync(file, 'utf8'))[key]).toEqual([[fresh.gflops, expect.any(Number)]]);
      // the older single-number form is forgotten, not misread
      writeFileSync(file, JSON.stringify({ [key]: first.gflops * 1000 }));
      expect(plannerSgemmPeak(0.02).gflops).toBeLessThan(first.gflops * 100);
      // a reading taken elsewhere (the bench's one-second measurement) raises what the next probe reports
      expect(recordSgemmPeak({ ...fresh, gflops: fresh.gflops * 50 })).toBe(fresh.gflops * 50);
      expect(plannerSgemmPeak(0.02).gflops).toBe(fresh.gflops * 50);
    } finally {
      if (prev === undefined) delete process.env.EDGETUNE_CACHE_DIR;
      else process.env.EDGETUNE_CACHE_DIR = prev;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('backend: wasm + fastmm fallback', () => {
  let info: Awaited<ReturnType<typeof initBackend>>;
  beforeAll(async () => {
    info = await initBackend({ backend: 'wasm', native: false, quiet: true });
  });

  it('reports wasm-fastmm when native is off', () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(info.matmul).toBe('wasm-fastmm');
    expect(info.fused).toBe('js');
    expect(matmulPath(info)).toBe('wasm-fastmm fused=js');
    expect(backendInfo()).toBe(info);
  });
  it('matMul: all transposes x 2D/batched/broadcast/rank 4 match the reference', () => checkMatMuls(3000));
  it('matMul gradients match the reference', () => checkMatMulGrads(4000));
  it('fused.matMul (bias + relu, transposeB, batched)', () => checkFusedMatMul());
  it('UnsortedSegmentSum (gradient of gather) scatter-adds', () => checkSegmentSum());
  it('sparseSoftmaxCrossEntropy loss and gradient (JS loops)', () => checkXent());
  it('Identity aliases and the clone survives disposal of its source', () => {
    const before = tf.memory().numBytes;
    const vals = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 - 7);
    const x = tf.tensor1d(vals);
    const y = tf.clone(x); // runs the Identity kernel
    expect(y.dataId).toBe(x.dataId); // aliased, not copied
    x.dispose();
    const z = tf.fill([1000], 123); // reuses freed heap if the clone's memory had been released
    expect(Array.from(y.dataSync())).toEqual(Array.from(vals));
    z.dispose();
    y.dispose();
    expect(tf.memory().numBytes).toBe(before);
  });
  it('memoryStats reports tf, rss and wasm heap bytes', () => {
    const m = memoryStats();
    expect(m.rssBytes).toBeGreaterThan(1e6);
    expect(m.tfBytes).toBeGreaterThanOrEqual(0);
    expect(m.wasmHeapBytes).toBeGreaterThan(0);
  });
});

describe('backend: cpu', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', quiet: true });
  });
  afterAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('initBackend switches to cpu with our kernels', () => {
    const info = backendInfo()!;
    expect(tf.getBackend()).toBe('cpu');
    expect(info.backend).toBe('cpu');
    expect(info.matmul).toBe(hasAddon ? 'openblas' : 'tfjs');
    expect(info.fused).toBe(hasNative ? 'native' : 'js');
    expect(info.kernels).toContain('UnsortedSegmentSum');
  });
  it('matMul matches the reference', () => checkMatMuls(5000));
  it('UnsortedSegmentSum scatter-adds', () => checkSegmentSum());
  it('sparseSoftmaxCrossEntropy loss and gradient', () => checkXent());
  it('EDGETUNE_BACKEND forces the backend', async () => {
    process.env.EDGETUNE_BACKEND = 'cpu';
    try {
      const info = await initBackend({ backend: 'wasm', quiet: true });
      expect(info.backend).toBe('cpu');
      expect(tf.getBackend()).toBe('cpu');
    } finally {
      delete process.env.EDGETUNE_BACKEND;
    }
  });
});

describe('backend: selection errors and the composed-ops loss', () => {
  it("backend 'tensorflow' throws a clear error when tfjs-node is absent, leaving the backend as it was", async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    let hasTfjsNode = true;
    const pkg = '@tensorflow/tfjs-node';
    try {
      await import(/* @vite-ignore */ pkg);
    } catch {
      hasTfjsNode = false;
    }
    if (hasTfjsNode) return; // e.g. in a Docker image with tfjs-node: nothing to check here
    await expect(initBackend({ backend: 'tensorflow', quiet: true })).rejects.toThrow(/tensorflow/);
    expect(tf.getBackend()).toBe('wasm');
    const auto = await initBackend({ quiet: true }); // auto falls through to wasm
    expect(auto.backend).toBe('wasm');
  });
  it('logs one line unless quiet; concurrent identical calls share one result', async () => {
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const [i1, i2] = await Promise.all([
        initBackend({ backend: 'wasm', blasThreads: 1 }),
        initBackend({ backend: 'wasm', blasThreads: 1 }),
      ]);
      expect(i2).toBe(i1);
      const lines = spy.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('[edgetune]'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        hasAddon
          ? /^\[edgetune\] backend=wasm matmul=openblas\(1 threads\) kernels=\S*BatchMatMul/
          : new RegExp(
              `^\\[edgetune\\] backend=wasm matmul=wasm-fastmm fused=${hasNative ? 'native' : 'js'}( \\(native addon: .+\\))? kernels=\\S*BatchMatMul`,
            ),
      );
    } finally {
      spy.mockRestore();
    }
  });
  it('sparseSoftmaxCrossEntropyOps (fallback for other backends) matches the reference', () => {
    checkXent(sparseSoftmaxCrossEntropyOps, false);
  });
});
