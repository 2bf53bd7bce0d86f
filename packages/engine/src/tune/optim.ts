/**
 * AdamW (Loshchilov & Hutter, ICLR 2019; the PyTorch `torch.optim.AdamW` update), a warmup + decay
 * learning-rate schedule (HF `get_scheduler`: constant / linear / cosine with linear warmup) and
 * global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`). Our own so that its state can be
 * checkpointed by variable name and restored exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import { adamwInPlace, sumOfSquares } from '../backend/fused.js';

export type LrSchedule = 'constant' | 'linear' | 'cosine';

/** Hyperparameters of AdamW; defaults follow torch.optim.AdamW except weightDecay (0, as Edge-LLM). */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/**
 * Learning rate at optimizer step `step` (0-based) of `total`, after `warmup` linear warmup steps.
 * Unit: same as `peak`.
 */
export function scheduledLr(peak: number, step: number, total: number, warmup: number, kind: LrSchedule): number {
  if (warmup > 0 && step < warmup) return (peak * (step + 1)) / warmup;
  if (kind === 'constant') return peak;
  const span = Math.max(1, total - warmup);
  const p = Math.min(1, Math.max(0, (step - warmup) / span));
  return kind === 'linear' ? peak * (1 - p) : peak * 0.5 * (1 + Math.cos(Math.PI * p));
}

/** The global L2 norm of `tensors` (float64 through the native addon when loaded, else a float32 TF.js reduction). */
export function globalNorm(tensors: readonly tf.Tensor[]): number {
  if (!tensors.length) return 0;
  const sq = sumOfSquares([...tensors]);
  return sq !== null ? Math.sqrt(sq) : tf.tidy(() => tf.sqrt(tf.addN(tensors.map((t) => tf.sum(tf.square(t))))).dataSync()[0]);
}

/**
 * Scales gradients in place so their global L2 norm is at most `maxNorm`.
 * @returns the norm before clipping.
 */
export function clipByGlobalNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const names = Object.keys(grads);
  if (!names.length) return 0;
  // Native: one float64 pass per gradient; else a TF.js reduction (float32).
  const norm = globalNorm(names.map((n) => grads[n]));
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (const n of names) {
      const old = grads[n];
      grads[n] = tf.mul(old, s);
      old.dispose();
    }
  }
  return norm;
}

/** AdamW with per-variable moments keyed by variable name. */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** number of updates applied so far (for bias correction) per variable */
  private steps = new Map<string, number>();
  private m = new Map<string, tf.Variable>();
  private v = new Map<string, tf.Variable>();

  constructor(o: AdamWOptions) {
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
  }

  /**
   * One update: w -= lr * (mhat / (sqrt(vhat) + eps) + wd * w) for each (variable, gradient) pair.
   * Variables without a gradient are untouched (their moments too), so windows can alternate.
   * With the native addon (wasm/cpu) each variable is updated in place in one C pass over w, m, v, g
   * (the same float32 operations as the TF.js composition below, which runs otherwise).
   */
  apply(vars: tf.Variable[], grads: Record<string, tf.Tensor>, lr: number): void {
    const { beta1: b1, beta2: b2, eps, weightDecay: wd } = this;
    for (const w of vars) {
      const g = grads[w.name];
      if (!g) continue;
      const t = (this.steps.get(w.name) ?? 0) + 1;
      this.steps.set(w.name, t);
      let m = this.m.get(w.name),
        v = this.v.get(w.name);
      if (!m || !v) {
        // In a tidy, so the zeros are released and the moments own their data (in-place updates).
        m = tf.tidy(() => tf.variable(tf.zerosLike(w), false));
        v = tf.tidy(() => tf.variable(tf.zerosLike(w), false));
        this.m.set(w.name, m);
        this.v.set(w.name, v);
      }
      const mm = m,
        vv = v;
      const c1 = 1 - b1 ** t,
        c2 = 1 - b2 ** t;
      if (adamwInPlace(w, mm, vv, g, { b1, b2, eps, lrC1: lr / c1, sqrtC2: Math.sqrt(c2), lrWd: wd > 0 ? lr * wd : 0 })) continue;
      tf.tidy(() => {
        const m1 = tf.add(tf.mul(mm, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(vv, b2), tf.mul(tf.square(g), 1 - b2));
        // lr * mhat / (sqrt(vhat) + eps) written as in torch: (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps)
        const upd = tf.div(m1, tf.add(tf.div(tf.sqrt(v1), Math.sqrt(c2)), eps));
        let w1 = tf.sub(w, tf.mul(upd, lr / c1));
        if (wd > 0) w1 = tf.sub(w1, tf.mul(w, lr * wd));
        mm.assign(m1);
        vv.assign(v1);
        w.assign(w1);
      });
    }
  }

  /** Moments and step counts, for checkpoints: names `<var>.exp_avg`, `<var>.exp_avg_sq`. */
  stateTensors(): { tensors: Map<string, tf.Tensor>; steps: Record<string, number> } {
    const tensors = new Map<string, tf.Tensor>();
    for (const [n, m] of this.m) {
      tensors.set(`${n}.exp_avg`, m);
      tensors.set(`${n}.exp_avg_sq`, this.v.get(n)!);
    }
    return { tensors, steps: Object.fromEntries(this.steps) };
  }

  /** Restores what {@link stateTensors} returned (arrays copied into fresh variables). */
  restore(tensors: Map<string, { data: Float32Array; shape: number[] }>, steps: Record<string, number>): void {
    this.dispose();
    for (const [key, t] of tensors) {
      const m = /^(.*)\.(exp_avg|exp_avg_sq)$/.exec(key);
      if (!m) continue;
      const target = m[2] === 'exp_avg' ? this.m : this.v;
      target.set(
        m[1],
        tf.tidy(() => tf.variable(tf.tensor(t.data, t.shape), false)),
      );
    }
    this.steps = new Map(Object.entries(steps));
  }

  /** Bytes held by the moments (float32). */
  bytes(): number {
    let n = 0;
    for (const m of this.m.values()) n += m.size * 8;
    return n;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
    this.steps.clear();
  }
}
