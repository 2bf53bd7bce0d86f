// Fused training ops for the LLaMA decoder: RMSNorm, SwiGLU, RoPE + head split, the attention
// core, dropout, the linear with a LoRA branch, and the AdamW update / gradient norm. Each op runs
// native code (native/fused.c through the addon: vectorized C loops on the addon's thread pool,
// OpenBLAS for products) as TF.js kernels with gradients when the addon is loaded and the backend is
// 'wasm' or 'cpu', and otherwise the equivalent composition of stock TF.js ops (the engine's
// pre-fusion code: the `...Ops` functions), so both paths compute the same function (up to float32
// rounding) and both are differentiable. With the addon, same-shape float32 Add also goes native.
//
// Why: after OpenBLAS took over the matmuls, a training step was dominated by thousands of small
// memory-bound wasm kernels running single-threaded (Multiply, Add, Sum, Cast, Transpose, Softmax,
// the LoRA branch's skinny products, ...). Each fused op replaces 5-20 of them with one pass over
// the data in each direction. Threads: initBackend's fusedThreads (default: BLAS threads, max 4).
//
// Gradients: ops whose backward needs a tensor the forward computes besides its result (RMSNorm's
// rstd, attention's probabilities) use tf.customGrad, so that the extra tensor is saved without
// being a kernel output (a kernel output would get a zero-filled dy of its size in backprop, 8 MB
// per layer for the attention probabilities). The others register a gradient for their kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { loadNativeAddon } from './native.js';
import type { BlasAddon } from './native.js';
import { overrideKernel, stockKernel } from './registry.js';
import type { CpuBackend, KernelArgs, WasmBackend } from './types.js';

/** Kernel names of the fused ops (registered for 'wasm' and 'cpu' when the addon is loaded). */
export const FUSED_KERNELS = {
  rmsNorm: 'EdgetuneRmsNorm',
  rmsNormGrad: 'EdgetuneRmsNormGrad',
  swiglu: 'EdgetuneSwiglu',
  swigluGrad: 'EdgetuneSwigluGrad',
  rope: 'EdgetuneRope',
  ropeGrad: 'EdgetuneRopeGrad',
  heads: 'EdgetuneHeads',
  headsGrad: 'EdgetuneHeadsGrad',
  attention: 'EdgetuneAttention',
  attentionGrad: 'EdgetuneAttentionGrad',
  dropout: 'EdgetuneDropout',
  loraLinear: 'EdgetuneLoraLinear',
  loraLinearGradX: 'EdgetuneLoraLinearGradX',
  loraLinearGradAB: 'EdgetuneLoraLinearGradAB',
} as const;

/** The native functions the fused kernels need (see native/fused.c for their contracts). */
type FusedAddon = Required<
  Pick<
    BlasAddon,
    | 'rmsNormForward'
    | 'rmsNormBackward'
    | 'swigluForward'
    | 'swigluBackward'
    | 'ropeForward'
    | 'ropeBackward'
    | 'attentionForward'
    | 'attentionBackward'
    | 'adamw'
    | 'sumSquares'
    | 'dropoutForward'
    | 'dropoutBackward'
    | 'loraLinearForward'
    | 'loraLinearGradX'
    | 'loraLinearGradAB'
    | 'add'
  >
>;

function fusedAddon(blas: BlasAddon | null): FusedAddon | null {
  return blas && typeof blas.attentionForward === 'function' && typeof blas.add === 'function' ? (blas as FusedAddon) : null;
}

// ---- storage access -------------------------------------------------------------------------

type Span = [Float32Array, number];
type OptSpan = [Float32Array | null, number];

/** Float32 data of tensors as (array, element offset) and output allocation, per backend. */
export interface Mem {
  /** On wasm, call only after every allocation of the kernel (heap growth detaches older views). */
  f32(t: TensorInfo): Span;
  alloc(shape: number[]): TensorInfo;
}

function wasmMem(b: WasmBackend): Mem {
  return {
    f32: (t) => {
      const d = b.dataIdMap.get(t.dataId);
      if (!d) throw new Error('fused kernel (wasm): tensor data not found (disposed?)');
      return [b.wasm.HEAPF32, d.memoryOffset >>> 2];
    },
    alloc: (shape) => b.makeOutput(shape, 'float32'),
  };
}

function cpuMem(b: CpuBackend): Mem {
  return {
    f32: (t) => {
      const v = b.data.get(t.dataId)?.values;
      if (!(v instanceof Float32Array)) throw new Error(`fused kernel (cpu): expected float32 storage, got ${t.dtype}`);
      return [v, 0];
    },
    alloc: (shape) => b.makeTensorInfo(shape, 'float32', new Float32Array(tf.util.sizeFromShape(shape))),
  };
}

/** The {@link Mem} accessor of a kernel's backend object ('wasm' or 'cpu'), for kernels outside this file. */
export function kernelMem(backendName: 'wasm' | 'cpu'): (backend: object) => Mem {
  return backendName === 'wasm' ? (b: object) => wasmMem(b as WasmBackend) : (b: object) => cpuMem(b as CpuBackend);
}

function input(args: KernelArgs, name: string, kernel: string): TensorInfo {
  const t = args.inputs[name];
  if (!t) throw new Error(`${kernel}: input ${name} is required`);
  if (t.dtype !== 'float32') throw new Error(`${kernel}: input ${name} must be float32, got ${t.dtype}`);
  return t;
}
const num = (args: KernelArgs, name: string) => Number(args.attrs?.[name]);

// ---- kernels --------------------------------------------------------------------------------

function kernels(mem: (backend: object) => Mem, n: FusedAddon): Record<string, KernelFunc> {
  const K = FUSED_KERNELS;
  const k: Record<string, (args: KernelArgs) => TensorInfo | TensorInfo[]> = {
    [K.rmsNorm]: (a) => {
      const x = input(a, 'x', K.rmsNorm),
        w = input(a, 'w', K.rmsNorm);
      const [rows, d] = x.shape,
        m = mem(a.backend);
      const y = m.alloc([rows, d]),
        rstd = m.alloc([rows]);
      n.rmsNormForward(rows, d, num(a, 'eps'), ...m.f32(x), ...m.f32(w), ...m.f32(y), ...m.f32(rstd));
      return [y, rstd];
    },
    [K.rmsNormGrad]: (a) => {
      const dy = input(a, 'dy', K.rmsNormGrad),
        x = input(a, 'x', K.rmsNormGrad);
      const w = input(a, 'w', K.rmsNormGrad),
        rstd = input(a, 'rstd', K.rmsNormGrad);
      const [rows, d] = x.shape,
        m = mem(a.backend);
      const dx = m.alloc([rows, d]),
        dw = m.alloc([d]);
      n.rmsNormBackward(rows, d, ...m.f32(dy), ...m.f32(x), ...m.f32(w), ...m.f32(rstd), ...m.f32(dx), ...m.f32(dw));
      return [dx, dw];
    },
    [K.swiglu]: (a) => {
      const g = input(a, 'g', K.swiglu),
        u = input(a, 'u', K.swiglu),
        m = mem(a.backend);
      const y = m.alloc(g.shape.slice());
      n.swigluForward(tf.util.sizeFromShape(g.shape), ...m.f32(g), ...m.f32(u), ...m.f32(y));
      return y;
    },
    [K.swigluGrad]: (a) => {
      const dy = input(a, 'dy', K.swigluGrad),
        g = input(a, 'g', K.swigluGrad),
        u = input(a, 'u', K.swigluGrad);
      const m = mem(a.backend);
      const dg = m.alloc(g.shape.slice()),
        du = m.alloc(g.shape.slice());
      n.swigluBackward(tf.util.sizeFromShape(g.shape), ...m.f32(dy), ...m.f32(g), ...m.f32(u), ...m.f32(dg), ...m.f32(du));
      return [dg, du];
    },
    [K.rope]: (a) => ropeKernel(a, mem, n, true, false),
    [K.ropeGrad]: (a) => ropeKernel(a, mem, n, true, true),
    [K.heads]: (a) => ropeKernel(a, mem, n, false, false),
    [K.headsGrad]: (a) => ropeKernel(a, mem, n, false, true),
    [K.attention]: (a) => {
      const q = input(a, 'q', K.attention),
        k2 = input(a, 'k', K.attention),
        v = input(a, 'v', K.attention);
      const km = a.inputs.keyMask ? input(a, 'keyMask', K.attention) : null;
      const [B, H, T, dh] = q.shape,
        KV = k2.shape[1],
        merged = !!a.attrs?.merged,
        m = mem(a.backend);
      const out = m.alloc(merged ? [B * T, H * dh] : [B, H, T, dh]),
        probs = m.alloc([B, H, T, T]);
      n.attentionForward(
        B,
        H,
        KV,
        T,
        dh,
        num(a, 'scale'),
        merged,
        ...m.f32(q),
        ...m.f32(k2),
        ...m.f32(v),
        ...(km ? (m.f32(km) as OptSpan) : ([null, 0] as OptSpan)),
        ...m.f32(out),
        ...m.f32(probs),
      );
      return [out, probs];
    },
    [K.attentionGrad]: (a) => {
      const K2 = K.attentionGrad;
      const dout = input(a, 'dy', K2),
        q = input(a, 'q', K2),
        k2 = input(a, 'k', K2),
        v = input(a, 'v', K2);
      const probs = input(a, 'probs', K2);
      const [B, H, T, dh] = q.shape,
        KV = k2.shape[1],
        m = mem(a.backend);
      const dq = m.alloc(q.shape.slice()),
        dk = m.alloc(k2.shape.slice()),
        dv = m.alloc(v.shape.slice());
      n.attentionBackward(
        B,
        H,
        KV,
        T,
        dh,
        num(a, 'scale'),
        !!a.attrs?.merged,
        ...m.f32(dout),
        ...m.f32(q),
        ...m.f32(k2),
        ...m.f32(v),
        ...m.f32(probs),
        ...m.f32(dq),
        ...m.f32(dk),
        ...m.f32(dv),
      );
      return [dq, dk, dv];
    },
    [K.loraLinear]: (a) => {
      const x = input(a, 'x', K.loraLinear),
        w = input(a, 'w', K.loraLinear);
      const A = input(a, 'a', K.loraLinear),
        B = input(a, 'b', K.loraLinear),
        m = mem(a.backend);
      const [rows, inDim] = x.shape,
        outDim = w.shape[0],
        r = A.shape[0];
      const y = m.alloc([rows, outDim]);
      n.loraLinearForward(
        rows,
        inDim,
        outDim,
        r,
        num(a, 'scale'),
        num(a, 'rate'),
        num(a, 'seed'),
        ...m.f32(x),
        ...m.f32(w),
        ...m.f32(A),
        ...m.f32(B),
        ...m.f32(y),
      );
      return y;
    },
    [K.loraLinearGradX]: (a) => {
      const G = K.loraLinearGradX;
      const dy = input(a, 'dy', G),
        w = input(a, 'w', G),
        A = input(a, 'a', G),
        B = input(a, 'b', G),
        m = mem(a.backend);
      const dlow = a.inputs.dlow ? input(a, 'dlow', G) : null;
      const [rows, outDim] = dy.shape,
        inDim = w.shape[1],
        r = A.shape[0];
      const dx = m.alloc([rows, inDim]);
      n.loraLinearGradX(
        rows,
        inDim,
        outDim,
        r,
        num(a, 'scale'),
        num(a, 'rate'),
        num(a, 'seed'),
        ...m.f32(dy),
        ...m.f32(w),
        ...m.f32(A),
        ...m.f32(B),
        ...(dlow ? (m.f32(dlow) as OptSpan) : ([null, 0] as OptSpan)),
        ...m.f32(dx),
      );
      return dx;
    },
    [K.loraLinearGradAB]: (a) => {
      const G = K.loraLinearGradAB;
      const dy = input(a, 'dy', G),
        x = input(a, 'x', G),
        A = input(a, 'a', G),
        B = input(a, 'b', G),
        m = mem(a.backend);
      const [rows, outDim] = dy.shape,
        inDim = x.shape[1],
        r = A.shape[0];
      const da = m.alloc([r, inDim]),
        db = m.alloc([outDim, r]),
        dlow = m.alloc([rows, r]);
      n.loraLinearGradAB(
        rows,
        inDim,
        outDim,
        r,
        num(a, 'scale'),
        num(a, 'rate'),
        num(a, 'seed'),
        ...m.f32(dy),
        ...m.f32(x),
        ...m.f32(A),
        ...m.f32(B),
        ...m.f32(da),
        ...m.f32(db),
        ...m.f32(dlow),
      );
      return [da, db, dlow];
    },
    [K.dropout]: (a) => {
      const x = input(a, 'x', K.dropout),
        m = mem(a.backend);
      const y = m.alloc(x.shape.slice());
      n.dropoutForward(tf.util.sizeFromShape(x.shape), num(a, 'rate'), num(a, 'seed'), ...m.f32(x), ...m.f32(y));
      return y;
    },
  };
  return k as unknown as Record<string, KernelFunc>;
}

/** RoPE / head split, forward ([B*T, n*dh] -> [B, n, T, dh]) or backward (the reverse). */
function ropeKernel(a: KernelArgs, mem: (backend: object) => Mem, n: FusedAddon, rotate: boolean, backward: boolean): TensorInfo {
  const name = rotate ? (backward ? FUSED_KERNELS.ropeGrad : FUSED_KERNELS.rope) : backward ? FUSED_KERNELS.headsGrad : FUSED_KERNELS.heads;
  const x = input(a, backward ? 'dy' : 'x', name);
  const B = num(a, 'batch'),
    T = num(a, 'seq'),
    nh = num(a, 'heads'),
    dh = num(a, 'headDim');
  const cos = rotate ? input(a, 'cos', name) : null,
    sin = rotate ? input(a, 'sin', name) : null;
  const m = mem(a.backend);
  const y = m.alloc(backward ? [B * T, nh * dh] : [B, nh, T, dh]);
  (backward ? n.ropeBackward : n.ropeForward)(
    B,
    T,
    nh,
    dh,
    rotate,
    ...m.f32(x),
    ...(cos ? (m.f32(cos) as OptSpan) : ([null, 0] as OptSpan)),
    ...(sin ? (m.f32(sin) as OptSpan) : ([null, 0] as OptSpan)),
    ...m.f32(y),
  );
  return y;
}

/**
 * Add with a native loop for two float32 tensors of the same shape (residual adds, gradient
 * accumulation: dozens per training step; the stock wasm kernel runs single-threaded, the
 * cpu one in JS); everything else (broadcasts, other dtypes) goes to the stock kernel.
 */
function nativeAdd(mem: (backend: object) => Mem, n: FusedAddon, stockFn: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { a, b } = args.inputs;
    if (!a || !b || a.dtype !== 'float32' || b.dtype !== 'float32' || !tf.util.arraysEqual(a.shape, b.shape)) {
      return stockFn(args as Parameters<KernelFunc>[0]);
    }
    const m = mem(args.backend);
    const y = m.alloc(a.shape.slice());
    n.add(tf.util.sizeFromShape(a.shape), ...m.f32(a), ...m.f32(b), ...m.f32(y));
    return y;
  }) as KernelFunc;
}

let gradientsRegistered = false;

/** Gradients of the single-output fused kernels (once per process: tf warns on re-registration). */
function registerGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  const K = FUSED_KERNELS;
  const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: object = {}) =>
    tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap);
  const zeros = (t: tf.Tensor) => () => tf.zerosLike(t);
  if (!tf.getGradient(K.swiglu)) {
    tf.registerGradient({
      kernelName: K.swiglu,
      inputsToSave: ['g', 'u'],
      gradFunc: (dy, saved) => {
        const [g, u] = saved;
        const [dg, du] = run(K.swigluGrad, { dy: dy as tf.Tensor, g, u }) as tf.Tensor[];
        return { g: () => dg, u: () => du };
      },
    });
  }
  if (!tf.getGradient(K.rope)) {
    tf.registerGradient({
      kernelName: K.rope,
      inputsToSave: ['cos', 'sin'],
      gradFunc: (dy, saved, attrs) => {
        const [cos, sin] = saved;
        return { x: () => run(K.ropeGrad, { dy: dy as tf.Tensor, cos, sin }, attrs) as tf.Tensor, cos: zeros(cos), sin: zeros(sin) };
      },
    });
  }
  if (!tf.getGradient(K.heads)) {
    tf.registerGradient({
      kernelName: K.heads,
      gradFunc: (dy, _saved, attrs) => ({ x: () => run(K.headsGrad, { dy: dy as tf.Tensor }, attrs) as tf.Tensor }),
    });
  }
  if (!tf.getGradient(K.loraLinear)) {
    tf.registerGradient({
      kernelName: K.loraLinear,
      inputsToSave: ['x', 'w', 'a', 'b'],
      gradFunc: (dy, saved, attrs) => {
        const [x, w, a, b] = saved;
        const d = dy as tf.Tensor;
        // dA and dB in one pass, eagerly (the LoRA factors are what is trained), with dlow = scale*dy B
        // [n, r] for dx; dx and dW lazily, only when something upstream needs them (dW: a frozen
        // base weight normally does not; dx: not for the first layer after a frozen prefix).
        const [da, db, dlow] = run(K.loraLinearGradAB, { dy: d, x, a, b }, attrs) as tf.Tensor[];
        return {
          x: () => run(K.loraLinearGradX, { dy: d, w, a, b, dlow }, attrs) as tf.Tensor,
          w: () => tf.matMul(d, x, true, false),
          a: () => da,
          b: () => db,
        };
      },
    });
  }
  if (!tf.getGradient(K.dropout)) {
    tf.registerGradient({
      kernelName: K.dropout,
      // The same map: dx = dy * mask / (1 - rate), the mask regenerated from the seed.
      gradFunc: (dy, _saved, attrs) => ({ x: () => run(K.dropout, { x: dy as tf.Tensor }, attrs) as tf.Tensor }),
    });
  }
}

/** Backends on which fusion was decided by installFusedKernels (true: kernels registered). */
const decided = new Map<string, FusedAddon | null>();

/**
 * (Re)registers the fused kernels for 'wasm' or 'cpu' when `blas` has the fused functions; with
 * null, records that this backend runs the compositions (initBackend with native off).
 * Returns the kernel names registered.
 */
export function installFusedKernels(backendName: 'wasm' | 'cpu', blas: BlasAddon | null): string[] {
  const n = fusedAddon(blas);
  decided.set(backendName, n);
  if (!n) return [];
  registerGradients();
  const mem = kernelMem(backendName);
  const ks = kernels(mem, n);
  for (const [name, fn] of Object.entries(ks)) overrideKernel(name, backendName, fn);
  const add = stockKernel('Add', backendName)?.kernelFunc;
  if (add) overrideKernel('Add', backendName, nativeAdd(mem, n, add));
  return [...Object.keys(ks), 'Add'];
}

/** The addon when the fused kernels are active on the current backend, else null (use compositions). */
function active(): FusedAddon | null {
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') return null;
  if (!decided.has(backend)) installFusedKernels(backend, loadNativeAddon()); // used without initBackend
  const n = decided.get(backend) ?? null;
  return n && tf.getKernel(FUSED_KERNELS.rmsNorm, backend) ? n : null;
}

/** Whether the fused native kernels run on the current backend (else the TF.js compositions do). */
export function fusedKernelsActive(): boolean {
  return active() !== null;
}

const runKernel = <T extends tf.Tensor | tf.Tensor[]>(name: string, inputs: Record<string, tf.Tensor>, attrs: object = {}) =>
  tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as T;

export interface GradResult {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];
}

/** tf.customGrad over a list of inputs: `f` runs the forward kernel, saves what backward needs. */
export function customOp(inputs: tf.Tensor[], f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => GradResult): tf.Tensor {
  const fn = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    return f(args as tf.Tensor[], save);
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return fn(...inputs);
}

function assertF32(name: string, t: tf.Tensor, rank: number, what: string): void {
  if (t.dtype !== 'float32' || t.rank !== rank)
    throw new Error(`${name}: ${what} must be a float32 tensor of rank ${rank}, got ${t.dtype} [${t.shape}]`);
}

// ---- RMSNorm --------------------------------------------------------------------------------

/** RMSNorm as stock TF.js ops: x * rsqrt(mean(x^2, -1) + eps) * w. */
export function rmsNormOps(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const v = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(v, eps))), w) as tf.Tensor2D;
  });
}

/**
 * RMSNorm (HF LlamaRMSNorm) over the last axis: y = x * rsqrt(mean(x^2) + eps) * w.
 * Differentiable w.r.t. x and w. Fused: one pass forward (saving x and rstd [n]), one backward.
 * @param x float32 [n, d]. @param w float32 [d]. @throws Error on wrong ranks, dtypes or sizes.
 */
export function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  assertF32('rmsNorm', x, 2, 'x');
  assertF32('rmsNorm', w, 1, 'w');
  if (w.shape[0] !== x.shape[1]) throw new Error(`rmsNorm: w [${w.shape}] does not match x [${x.shape}]`);
  if (!active()) return rmsNormOps(x, w, eps);
  return customOp([x, w], ([xx, ww], save) => {
    const [y, rstd] = runKernel<tf.Tensor[]>(FUSED_KERNELS.rmsNorm, { x: xx, w: ww }, { eps });
    save([xx, ww, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw, sr] = saved;
        return runKernel<tf.Tensor[]>(FUSED_KERNELS.rmsNormGrad, { dy, x: sx, w: sw, rstd: sr });
      },
    };
  }) as tf.Tensor2D;
}

// ---- SwiGLU ---------------------------------------------------------------------------------

/** silu(g) * u as stock TF.js ops. */
export function swigluOps(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.mul(g, tf.sigmoid(g)), u) as tf.Tensor2D);
}

/**
 * SwiGLU gate: silu(g) * u = g * sigmoid(g) * u, elementwise. Differentiable w.r.t. g and u.
 * @param g float32 [n, f] (gate_proj output). @param u float32 [n, f] (up_proj output).
 */
export function swiglu(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D {
  assertF32('swiglu', g, 2, 'g');
  assertF32('swiglu', u, 2, 'u');
  if (!tf.util.arraysEqual(g.shape, u.shape)) throw new Error(`swiglu: g [${g.shape}] and u [${u.shape}] differ`);
  if (!active()) return swigluOps(g, u);
  return runKernel<tf.Tensor2D>(FUSED_KERNELS.swiglu, { g, u });
}

// ---- RoPE + head split ----------------------------------------------------------------------

/** Layout of a projection output [batch*seq, heads*headDim] and the RoPE tables. */
export interface HeadsOptions {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  /** [seq, headDim] RoPE tables (HF layout: cat(freqs, freqs)); omit both for a plain head split. */
  cos?: tf.Tensor2D;
  sin?: tf.Tensor2D;
}

function checkHeads(x: tf.Tensor2D, o: HeadsOptions): void {
  assertF32('ropeHeads', x, 2, 'x');
  const { batch: B, seq: T, heads: n, headDim: dh } = o;
  if (x.shape[0] !== B * T || x.shape[1] !== n * dh) {
    throw new Error(`ropeHeads: x [${x.shape}] is not [batch*seq, heads*headDim] = [${B * T}, ${n * dh}]`);
  }
  if (!o.cos !== !o.sin) throw new Error('ropeHeads: give both cos and sin, or neither');
  if (o.cos && o.sin) {
    if (dh % 2) throw new Error(`ropeHeads: headDim must be even for RoPE, got ${dh}`);
    for (const t of [o.cos, o.sin]) {
      assertF32('ropeHeads', t, 2, 'cos/sin');
      if (t.shape[0] !== T || t.shape[1] !== dh) throw new Error(`ropeHeads: cos/sin must be [${T}, ${dh}], got [${t.shape}]`);
    }
  }
}

/** The head split and RoPE as stock TF.js ops (reshape, transpose, rotate_half, mul, add). */
export function ropeHeadsOps(x: tf.Tensor2D, o: HeadsOptions): tf.Tensor4D {
  const { batch: B, seq: T, heads: n, headDim: dh } = o;
  return tf.tidy(() => {
    const t = tf.transpose(tf.reshape(x, [B, T, n, dh]), [0, 2, 1, 3]) as tf.Tensor4D;
    if (!o.cos || !o.sin) return t;
    const half = dh / 2;
    const rot = tf.concat([tf.neg(tf.slice(t, [0, 0, 0, half], [-1, -1, -1, half])), tf.slice(t, [0, 0, 0, 0], [-1, -1, -1, half])], 3);
    return tf.add(tf.mul(t, o.cos), tf.mul(rot, o.sin)) as tf.Tensor4D;
  });
}

/**
 * Splits a projection output into heads and applies rotary embeddings (HF rotate_half form):
 * x [batch*seq, heads*headDim] (rows b*seq+t) -> y [batch, heads, seq, headDim] with
 * y = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x[half:], x[:half]). Without cos/sin, the
 * plain head split (for v). Differentiable w.r.t. x.
 */
export function ropeHeads(x: tf.Tensor2D, o: HeadsOptions): tf.Tensor4D {
  checkHeads(x, o);
  if (!active()) return ropeHeadsOps(x, o);
  const attrs = { batch: o.batch, seq: o.seq, heads: o.heads, headDim: o.headDim };
  if (o.cos && o.sin) return runKernel<tf.Tensor4D>(FUSED_KERNELS.rope, { x, cos: o.cos, sin: o.sin }, attrs);
  return runKernel<tf.Tensor4D>(FUSED_KERNELS.heads, { x }, attrs);
}

// ---- attention core -------------------------------------------------------------------------

/** Options of `attention`. */
export interface AttentionOptions {
  /** multiplies q.k^T (usually 1/sqrt(headDim)) */
  scale: number;
  /** [batch, seq] float32 key padding mask, 1 = attend, 0 = padding; null/absent = no padding. */
  keyMask?: tf.Tensor2D | null;
  /** output [batch*seq, heads*headDim] (heads merged, ready for o_proj) instead of [batch, heads, seq, headDim] */
  merged?: boolean;
  /**
   * Composition path only: a precomputed additive mask [1 or batch, 1, seq, seq] (0 allowed, -1e9
   * masked) that already includes the causal and key masks; built from keyMask when absent.
   */
  additiveMask?: tf.Tensor4D;
}

/** Additive attention-mask value of a masked score (large and finite, so a fully masked row stays finite). */
export const MASK_VALUE = -1e9;

/** Additive causal (+ key padding) mask [1 or B, 1, T, T]: -1e9 where j > i or key j is padding. */
function additiveMask(B: number, T: number, keyMask: tf.Tensor2D | null | undefined): tf.Tensor4D {
  return tf.tidy(() => {
    const i = tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]),
      j = tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]);
    let masked = tf.reshape(tf.greater(j, i), [1, 1, T, T]);
    if (keyMask) masked = tf.logicalOr(masked, tf.reshape(tf.equal(keyMask, 0), [B, 1, 1, T]));
    return tf.mul(tf.cast(masked, 'float32'), MASK_VALUE) as tf.Tensor4D;
  });
}

/** Attention core as stock TF.js ops (the engine's pre-fusion code: scaled q, matmuls, additive mask, softmax). */
export function attentionOps(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: AttentionOptions): tf.Tensor {
  const [B, H, T, dh] = q.shape,
    KV = k.shape[1],
    rep = H / KV;
  return tf.tidy(() => {
    const mask = o.additiveMask ?? additiveMask(B, T, o.keyMask);
    // GQA without repeat_kv: query head g*rep+r uses kv head g, so fold (rep, T) into one axis.
    const qg = tf.reshape(tf.mul(q, o.scale), [B, KV, rep * T, dh]);
    const scores = tf.add(tf.reshape(tf.matMul(qg, k, false, true), [B, H, T, T]), mask);
    const probs = tf.reshape(tf.softmax(scores), [B, KV, rep * T, T]);
    const out = tf.reshape(tf.matMul(probs, v), [B, H, T, dh]);
    return o.merged ? tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B * T, H * dh]) : out;
  });
}

/**
 * Causal grouped-query attention core: softmax(scale * q.k^T + mask) . v, where query head h uses
 * kv head floor(h / (H/KV)) and the mask allows key s for query t when s <= t and keyMask[b, s] != 0.
 * A query whose keys are all masked attends uniformly to all seq keys (as with an additive -1e9 mask).
 * Differentiable w.r.t. q, k, v. Fused: one GEMM per (batch, kv group) for each product (the rep query
 * heads of a group folded into rows), the probabilities [B, H, T, T] kept for the backward pass.
 * @param q float32 [B, H, T, dh] (RoPE applied). @param k, v float32 [B, KV, T, dh].
 * @returns [B, H, T, dh], or [B*T, H*dh] when `merged`.
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: AttentionOptions): tf.Tensor {
  assertF32('attention', q, 4, 'q');
  assertF32('attention', k, 4, 'k');
  assertF32('attention', v, 4, 'v');
  const [B, H, T, dh] = q.shape,
    KV = k.shape[1];
  if (k.shape[0] !== B || k.shape[2] !== T || k.shape[3] !== dh || !tf.util.arraysEqual(k.shape, v.shape) || KV < 1 || H % KV) {
    throw new Error(
      `attention: q [${q.shape}] needs k, v [${B}, KV, ${T}, ${dh}] with KV dividing ${H}, got k [${k.shape}] v [${v.shape}]`,
    );
  }
  if (o.keyMask) {
    assertF32('attention', o.keyMask, 2, 'keyMask');
    if (o.keyMask.shape[0] !== B || o.keyMask.shape[1] !== T)
      throw new Error(`attention: keyMask must be [${B}, ${T}], got [${o.keyMask.shape}]`);
  }
  if (!active()) return attentionOps(q, k, v, o);
  const attrs = { scale: o.scale, merged: !!o.merged };
  const keyMask = o.keyMask ?? null;
  return customOp([q, k, v], ([qq, kk, vv], save) => {
    const inputs: Record<string, tf.Tensor> = { q: qq, k: kk, v: vv };
    if (keyMask) inputs.keyMask = keyMask;
    const [out, probs] = runKernel<tf.Tensor[]>(FUSED_KERNELS.attention, inputs, attrs);
    save([qq, kk, vv, probs]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv, sp] = saved;
        return runKernel<tf.Tensor[]>(FUSED_KERNELS.attentionGrad, { dy, q: sq, k: sk, v: sv, probs: sp }, attrs);
      },
    };
  });
}

// ---- dropout --------------------------------------------------------------------------------

/**
 * Inverted dropout: x * keep / (1 - rate), keep ~ Bernoulli(1 - rate). Fused: the mask comes from a
 * counter-based hash of (seed, element index), so nothing is stored for the backward pass; the same
 * seed gives the same mask. Composition path: tf.dropout with the same seed (a different mask
 * stream). Without a seed, a random one. rate 0 returns x itself.
 */
export function dropout(x: tf.Tensor, rate: number, seed?: number): tf.Tensor {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout: rate must be in [0, 1), got ${rate}`);
  if (rate === 0) return x;
  if (x.dtype !== 'float32' || !active()) return tf.dropout(x, rate, undefined, seed);
  return runKernel<tf.Tensor>(FUSED_KERNELS.dropout, { x }, { rate, seed: dropoutSeed(seed) });
}

/** An integer seed in (-2^52, 2^52) for the native dropout mask; random when absent. Idempotent on its
 *  own results, so a seed drawn once gives the same mask on every later `dropout` call. */
export function dropoutSeed(seed: number | undefined): number {
  return seed === undefined || !Number.isFinite(seed) ? Math.floor(Math.random() * 2 ** 52) : Math.trunc(seed) % 2 ** 52;
}

// ---- linear with LoRA -----------------------------------------------------------------------

/** LoRA branch of `loraLinear`. */
export interface LoraLinearOptions {
  /** lora_alpha / r */
  scale: number;
  /** dropout on the branch input (0: none) */
  dropout: number;
  /** dropout seed (random when absent) */
  seed?: number;
}

/** `loraLinear` as stock TF.js ops (the engine's pre-fusion code). */
export function loraLinearOps(x: tf.Tensor2D, w: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, o: LoraLinearOptions): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.matMul(x, w, false, true);
    const xin = o.dropout > 0 ? tf.dropout(x, o.dropout, undefined, o.seed) : x;
    const low = tf.mul(tf.matMul(xin, a, false, true), o.scale);
    return tf.add(y, tf.matMul(low, b, false, true)) as tf.Tensor2D;
  });
}

/**
 * Linear layer with a LoRA branch (PEFT LoraLayer without bias): y = x W^T + scale * B(A(dropout(x))),
 * i.e. x W^T + scale * (drop(x) A^T) B^T. Differentiable w.r.t. x, W, A and B (dW only computed when
 * needed). Fused: the main product on OpenBLAS and the rank-r branch (dropout, both skinny products,
 * the add) as one pass over the rows; backward likewise. The dropout mask is the one `dropout`
 * draws for the same seed.
 * @param x [n, in]. @param w [out, in] (HF layout). @param a [r, in] (lora_A). @param b [out, r] (lora_B).
 */
export function loraLinear(x: tf.Tensor2D, w: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, o: LoraLinearOptions): tf.Tensor2D {
  for (const [t, what] of [
    [x, 'x'],
    [w, 'w'],
    [a, 'a'],
    [b, 'b'],
  ] as const)
    assertF32('loraLinear', t, 2, what);
  const [, inDim] = x.shape,
    [outDim] = w.shape,
    r = a.shape[0];
  if (w.shape[1] !== inDim || a.shape[1] !== inDim || b.shape[0] !== outDim || b.shape[1] !== r) {
    throw new Error(`loraLinear: shapes do not fit: x [${x.shape}] w [${w.shape}] a [${a.shape}] b [${b.shape}]`);
  }
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new Error(`loraLinear: dropout must be in [0, 1), got ${o.dropout}`);
  if (!active()) return loraLinearOps(x, w, a, b, o);
  const seed = o.dropout > 0 ? dropoutSeed(o.seed) : 0;
  return runKernel<tf.Tensor2D>(FUSED_KERNELS.loraLinear, { x, w, a, b }, { scale: o.scale, rate: o.dropout, seed });
}

// ---- optimizer helpers ----------------------------------------------------------------------

/** Float32 scalars of one AdamW update (see native/fused.c adamw_range). */
export interface AdamWScalars {
  b1: number;
  b2: number;
  eps: number;
  /** lr / (1 - b1^t) */
  lrC1: number;
  /** sqrt(1 - b2^t) */
  sqrtC2: number;
  /** lr * weightDecay (0: no decay) */
  lrWd: number;
}

/** How many tensors share `t`'s data on the backend (reshapes, aliasing clones, variables). */
function refCount(t: tf.Tensor): number {
  return (tf.backend() as unknown as { refCount(dataId: object): number }).refCount(t.dataId);
}

/** Span of a float32 tensor's data on the active backend (wasm heap / cpu values). */
function spanOf(t: tf.Tensor): Span {
  const backend = tf.getBackend();
  return backend === 'wasm' ? wasmMem(tf.backend() as unknown as WasmBackend).f32(t) : cpuMem(tf.backend() as unknown as CpuBackend).f32(t);
}

/**
 * AdamW update in place, in native code: one pass over w, m, v and g (the same float32 operations
 * as the TF.js composition in tune/optim.ts). Done only when the fused kernels are active and w, m
 * and v each own their data (refcount 1, so no other tensor sees the change).
 * @returns false when it did nothing (the caller then runs the composition).
 */
export function adamwInPlace(w: tf.Variable, m: tf.Variable, v: tf.Variable, g: tf.Tensor, s: AdamWScalars): boolean {
  const n = active();
  if (!n || w.dtype !== 'float32' || g.dtype !== 'float32' || m.dtype !== 'float32' || v.dtype !== 'float32') return false;
  if (!tf.util.arraysEqual(w.shape, g.shape) || !tf.util.arraysEqual(w.shape, m.shape) || !tf.util.arraysEqual(w.shape, v.shape))
    return false;
  if (refCount(w) !== 1 || refCount(m) !== 1 || refCount(v) !== 1) return false;
  const fr = Math.fround;
  n.adamw(
    w.size,
    ...spanOf(w),
    ...spanOf(m),
    ...spanOf(v),
    ...spanOf(g),
    fr(s.b1),
    fr(1 - s.b1),
    fr(s.b2),
    fr(1 - s.b2),
    fr(s.sqrtC2),
    fr(s.eps),
    fr(s.lrC1),
    fr(s.lrWd),
  );
  return true;
}

/** Sum of squares of the tensors' elements (float64), natively; null when the fused kernels are off. */
export function sumOfSquares(tensors: tf.Tensor[]): number | null {
  const n = active();
  if (!n || tensors.some((t) => t.dtype !== 'float32')) return null;
  let s = 0;
  for (const t of tensors) s += n.sumSquares(t.size, ...spanOf(t));
  return s;
}
