// Loader for the optional native N-API addon (native/blas_addon.c + fused.c, built by scripts/build-native.mjs),
// with OpenBLAS or, built without it, with the fused kernels only (hasBlas false).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

type F32 = Float32Array;

/** The functions exported by native/blas_addon.c and native/fused.c. */
export interface BlasAddon {
  /**
   * Whether sgemm (and the GEMMs inside the fused kernels) run on OpenBLAS. false: built without BLAS,
   * sgemm is a plain C loop the engine does not use for tf.matMul. Absent in addons built before it
   * existed, which always had OpenBLAS.
   */
  hasBlas?: boolean;
  /**
   * Batched row-major SGEMM via `cblas_sgemm`: for i < batch,
   * C[cOff + i*strideC] (M x N) = op(A[aOff + i*strideA]) (M x K) * op(B[bOff + i*strideB]) (K x N),
   * op = transpose when transA/transB. Offsets and strides are in float elements (stride 0 broadcasts).
   * Throws RangeError when any access would fall outside the arrays.
   */
  sgemm(
    a: Float32Array,
    aOff: number,
    b: Float32Array,
    bOff: number,
    c: Float32Array,
    cOff: number,
    M: number,
    N: number,
    K: number,
    transA: boolean,
    transB: boolean,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
  ): void;
  /**
   * Fused softmax cross-entropy forward over row-major logits z[N, V] (see native/blas_addon.c):
   * writes lse[i] = logsumexp(z_i) for rows whose label != ignoreIndex (0 for ignored rows) and
   * returns the float64 sum of lse[i] - z_i[label_i]. Throws RangeError on a label outside [0, V).
   * Optional: absent in addons built before it existed.
   */
  xentForward?(
    z: Float32Array,
    zOff: number,
    labels: Int32Array,
    labelsOff: number,
    lse: Float32Array,
    lseOff: number,
    N: number,
    V: number,
    ignoreIndex: number,
  ): number;
  /** g_i = scale * (softmax(z_i) - onehot(label_i)) from the saved lse; ignored rows get 0. */
  xentBackward?(
    z: Float32Array,
    zOff: number,
    labels: Int32Array,
    labelsOff: number,
    lse: Float32Array,
    lseOff: number,
    N: number,
    V: number,
    ignoreIndex: number,
    scale: number,
    g: Float32Array,
    gOff: number,
  ): void;
  // Fused training kernels (native/fused.c; optional: absent in addons built before them). Arrays are
  // passed as (array, element offset) pairs (null where optional), sizes first; every access is
  // bounds-checked (RangeError). Contracts: see native/fused.c.
  setFusedThreads?(n: number): void;
  getFusedThreads?(): number;
  rmsNormForward?(
    n: number,
    d: number,
    eps: number,
    x: F32,
    xo: number,
    w: F32,
    wo: number,
    y: F32,
    yo: number,
    rstd: F32,
    ro: number,
  ): void;
  rmsNormBackward?(
    n: number,
    d: number,
    dy: F32,
    dyo: number,
    x: F32,
    xo: number,
    w: F32,
    wo: number,
    rstd: F32,
    ro: number,
    dx: F32 | null,
    dxo: number,
    dw: F32 | null,
    dwo: number,
  ): void;
  swigluForward?(n: number, g: F32, go: number, u: F32, uo: number, y: F32, yo: number): void;
  swigluBackward?(
    n: number,
    dy: F32,
    dyo: number,
    g: F32,
    go: number,
    u: F32,
    uo: number,
    dg: F32,
    dgo: number,
    du: F32,
    duo: number,
  ): void;
  ropeForward?(
    B: number,
    T: number,
    nh: number,
    dh: number,
    rotate: boolean,
    x: F32,
    xo: number,
    cos: F32 | null,
    co: number,
    sin: F32 | null,
    so: number,
    y: F32,
    yo: number,
  ): void;
  ropeBackward?(
    B: number,
    T: number,
    nh: number,
    dh: number,
    rotate: boolean,
    dy: F32,
    dyo: number,
    cos: F32 | null,
    co: number,
    sin: F32 | null,
    so: number,
    dx: F32,
    dxo: number,
  ): void;
  attentionForward?(
    B: number,
    H: number,
    KV: number,
    T: number,
    dh: number,
    scale: number,
    merged: boolean,
    q: F32,
    qo: number,
    k: F32,
    ko: number,
    v: F32,
    vo: number,
    keyMask: F32 | null,
    kmo: number,
    out: F32,
    oo: number,
    probs: F32,
    po: number,
  ): void;
  attentionBackward?(
    B: number,
    H: number,
    KV: number,
    T: number,
    dh: number,
    scale: number,
    merged: boolean,
    dout: F32,
    doo: number,
    q: F32,
    qo: number,
    k: F32,
    ko: number,
    v: F32,
    vo: number,
    probs: F32,
    po: number,
    dq: F32,
    dqo: number,
    dk: F32,
    dko: number,
    dv: F32,
    dvo: number,
  ): void;
  adamw?(
    n: number,
    w: F32,
    wo: number,
    m: F32,
    mo: number,
    v: F32,
    vo: number,
    g: F32,
    go: number,
    b1: number,
    omb1: number,
    b2: number,
    omb2: number,
    sqrtC2: number,
    eps: number,
    lrC1: number,
    lrWd: number,
  ): void;
  sumSquares?(n: number, x: F32, xo: number): number;
  /**
   * Linear over a frozen weight in its stored precision (native/frozen.c): format 0 F32, 1 BF16, 2 F16
   * (Uint16Array), 3 int8 (Int8Array), 4 int4 (Uint8Array, two per byte); scales [rows x groups] for 3 and 4.
   * transposed false: y[n, rows] = x[n, cols] W^T; true: y[n, cols] = x[n, rows] W. Offsets in floats.
   * Throws RangeError when an access falls outside the arrays. Absent in addons built before it existed.
   */
  frozenLinear?(
    x: F32,
    xOff: number,
    n: number,
    w: Float32Array | Uint16Array | Int8Array | Uint8Array,
    format: number,
    rows: number,
    cols: number,
    scales: F32 | null,
    groupSize: number,
    y: F32,
    yOff: number,
    transposed: boolean,
  ): void;
  /** Rows [r0, r0 + count) of a stored matrix (formats 1..4 of frozenLinear) widened to float32 into out[outOff..]. */
  widenRows?(
    w: Uint16Array | Int8Array | Uint8Array,
    format: number,
    rows: number,
    cols: number,
    scales: F32 | null,
    groupSize: number,
    r0: number,
    count: number,
    out: F32,
    outOff: number,
  ): void;
  dropoutForward?(n: number, rate: number, seed: number, x: F32, xo: number, y: F32, yo: number): void;
  dropoutBackward?(n: number, rate: number, seed: number, dy: F32, dyo: number, dx: F32, dxo: number): void;
  loraLinearForward?(
    n: number,
    inDim: number,
    outDim: number,
    r: number,
    scale: number,
    rate: number,
    seed: number,
    x: F32,
    xo: number,
    w: F32,
    wo: number,
    a: F32,
    ao: number,
    b: F32,
    bo: number,
    y: F32,
    yo: number,
  ): void;
  loraLinearGradX?(
    n: number,
    inDim: number,
    outDim: number,
    r: number,
    scale: number,
    rate: number,
    seed: number,
    dy: F32,
    dyo: number,
    w: F32,
    wo: number,
    a: F32,
    ao: number,
    b: F32,
    bo: number,
    dlow: F32 | null,
    dlo: number,
    dx: F32,
    dxo: number,
  ): void;
  loraLinearGradAB?(
    n: number,
    inDim: number,
    outDim: number,
    r: number,
    scale: number,
    rate: number,
    seed: number,
    dy: F32,
    dyo: number,
    x: F32,
    xo: number,
    a: F32,
    ao: number,
    b: F32,
    bo: number,
    da: F32,
    dao: number,
    db: F32,
    dbo: number,
    dlow: F32 | null,
    dlo: number,
  ): void;
  add?(n: number, a: F32, ao: number, b: F32, bo: number, out: F32, oo: number): void;
  setThreads(n: number): void;
  getThreads(): number;
  info(): { config: string; corename: string; threads: number };
}

let cached: { addon: BlasAddon | null; path: string | null; error: string | null } | undefined;

/** Candidate addon paths: $EDGETUNE_NATIVE_ADDON, then packages/engine/native/build (from src/ or dist/). */
function candidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const list = [process.env.EDGETUNE_NATIVE_ADDON, join(here, '..', '..', 'native', 'build', 'blas_addon.node')];
  return list.filter((p): p is string => !!p).map((p) => resolve(p));
}

/**
 * Loads the addon once per process, whichever variant was built (see `BlasAddon.hasBlas`). Returns null
 * (and remembers why, see `nativeLoadError`) when it is not built, fails to load (e.g. libopenblas
 * missing at run time) or is disabled by EDGETUNE_NATIVE=0. Use it for the fused and cross-entropy
 * kernels; the matmul needs `loadBlasAddon`.
 */
export function loadNativeAddon(): BlasAddon | null {
  if (cached) return cached.addon;
  if (process.env.EDGETUNE_NATIVE === '0') {
    cached = { addon: null, path: null, error: 'disabled by EDGETUNE_NATIVE=0' };
    return null;
  }
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const p of candidates()) {
    if (!existsSync(p)) {
      errors.push(`${p}: not built`);
      continue;
    }
    try {
      const addon = require(p) as BlasAddon;
      if (typeof addon.sgemm !== 'function' || typeof addon.setThreads !== 'function') {
        errors.push(`${p}: not an edgetune native addon`);
        continue;
      }
      cached = { addon, path: p, error: null };
      return addon;
    } catch (e) {
      errors.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  cached = { addon: null, path: null, error: errors.join('; ') || 'no candidate path' };
  return null;
}

/** The addon when it was built with OpenBLAS (its sgemm may serve tf.matMul), else null. */
export function loadBlasAddon(): BlasAddon | null {
  const addon = loadNativeAddon();
  return addon && addon.hasBlas !== false ? addon : null;
}

/** Why `loadBlasAddon()` returned null (the addon missing, or built without OpenBLAS), or null when it loaded. */
export function nativeLoadError(): string | null {
  const addon = loadNativeAddon();
  if (addon && addon.hasBlas === false) return `${cached?.path}: built without OpenBLAS (fused kernels only)`;
  return cached?.error ?? null;
}
