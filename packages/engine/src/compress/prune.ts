/**
 * Unstructured pruning of one linear layer's weight W [rows=out, cols=in] (HF layout):
 * - Wanda (Sun et al., ICLR 2024; locuslab/wanda): score |W_ij| * ||X_j||_2 over calibration inputs,
 *   prune the lowest-scoring fraction of each output row. No weight update.
 * - SparseGPT (Frantar & Alistarh, ICML 2023; IST-DASLab/sparsegpt `sparsegpt.py`): per 128-column
 *   block choose the mask by w^2 / [H^-1]_cc^2 on the already-updated weights, and compensate the
 *   pruning error of each column on the remaining ones with the OBS update through the upper
 *   Cholesky factor of the damped inverse Hessian H = 2/n sum x x^T.
 * Masks are 1 = kept, 0 = pruned; they stay fixed while tuning (LoRA never changes W).
 */
import { cholesky, choleskyInverse, choleskyUpper } from './linalg.js';

/** The k-th smallest value (0-based) of a, reordering a in place (Hoare quickselect, median of three). */
function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0,
    hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three as the pivot, which also guards against sorted input
    let x = a[lo],
      y = a[mid],
      z = a[hi];
    if (x > y) [x, y] = [y, x];
    if (y > z) [y, z] = [z, y];
    if (x > y) [x, y] = [y, x];
    const pivot = y;
    let i = lo,
      j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/**
 * Prunes the `prune` smallest of `scores` (ties by index) into `mask` at `at` (1 = kept, 0 = pruned);
 * `scratch` is a work array of at least scores.length.
 */
function topMaskInto(scores: Float64Array | Float32Array, prune: number, mask: Uint8Array, at: number, scratch: Float64Array): void {
  const n = scores.length;
  mask.fill(1, at, at + n);
  if (prune <= 0) return;
  if (prune >= n) {
    mask.fill(0, at, at + n);
    return;
  }
  // The prune-th smallest score by selection on a copy (linear time: this runs for every row of every
  // linear at every grid sparsity); then every score below it, and the first (by index) of those equal
  // to it: the same set as sorting by (score, index).
  const work = scratch.length === n ? scratch : scratch.subarray(0, n);
  work.set(scores);
  const t = kthSmallest(work, prune - 1);
  let below = 0;
  for (let i = 0; i < n; i++) if (scores[i] < t) below++;
  let ties = prune - below;
  for (let i = 0; i < n; i++) {
    const v = scores[i];
    if (v < t) mask[at + i] = 0;
    else if (v === t && ties > 0) {
      mask[at + i] = 0;
      ties--;
    }
  }
}

/** {@link topMaskInto} into a fresh mask. */
function topMask(scores: Float64Array | Float32Array, prune: number): Uint8Array {
  const mask = new Uint8Array(scores.length);
  topMaskInto(scores, prune, mask, 0, new Float64Array(scores.length));
  return mask;
}

/**
 * Wanda mask: per output row, prunes floor(cols * sparsity) weights with the smallest |W| * xNorm.
 * @param w [rows*cols] row-major
 * @param xNorm [cols] L2 norm of each input feature over the calibration tokens
 * @param sparsity fraction in [0, 1)
 * @returns mask [rows*cols]
 */
export function wandaMask(w: Float32Array, rows: number, cols: number, xNorm: Float32Array | Float64Array, sparsity: number): Uint8Array {
  if (sparsity < 0 || sparsity >= 1) throw new RangeError(`sparsity must be in [0, 1), got ${sparsity}`);
  const mask = new Uint8Array(rows * cols);
  const prune = Math.floor(cols * sparsity);
  const row = new Float64Array(cols),
    scratch = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) row[c] = Math.abs(w[r * cols + c]) * xNorm[c];
    topMaskInto(row, prune, mask, r * cols, scratch);
  }
  return mask;
}

/** W * mask, in place. */
export function applyMask(w: Float32Array, mask: Uint8Array): Float32Array {
  for (let i = 0; i < w.length; i++) if (!mask[i]) w[i] = 0;
  return w;
}

/** Fraction of zero entries. */
export function sparsityOf(w: Float32Array): number {
  let z = 0;
  for (const x of w) if (x === 0) z++;
  return z / Math.max(1, w.length);
}

/** Hessian accumulator for SparseGPT: H = 2/n sum_t x_t x_t^T over calibration tokens (float64). */
export class HessianAccumulator {
  readonly H: Float64Array;
  private n = 0;
  constructor(readonly cols: number) {
    this.H = new Float64Array(cols * cols);
  }
  /** Adds tokens x [tokens*cols] (row-major); running average as in sparsegpt's add_batch. */
  add(x: Float32Array, tokens: number): void {
    const c = this.cols,
      H = this.H;
    const total = this.n + tokens;
    const keep = this.n / total;
    for (let i = 0; i < H.length; i++) H[i] *= keep;
    const s = 2 / total;
    for (let t = 0; t < tokens; t++) {
      const o = t * c;
      for (let i = 0; i < c; i++) {
        const xi = x[o + i] * s;
        if (xi === 0) continue;
        const ri = i * c;
        for (let j = 0; j < c; j++) H[ri + j] += xi * x[o + j];
      }
    }
    this.n = total;
  }
  get tokens(): number {
    return this.n;
  }
}

/**
 * SparseGPT on one weight matrix.
 * @param w [rows*cols] row-major, not modified
 * @param H [cols*cols] Hessian from {@link HessianAccumulator}
 * @param sparsity fraction pruned in every block of `blockSize` columns
 * @returns the pruned, error-compensated weights and the mask
 */
export function sparseGpt(
  w: Float32Array,
  rows: number,
  cols: number,
  Hin: Float64Array,
  sparsity: number,
  opts: { blockSize?: number; percDamp?: number } = {},
): { weight: Float32Array; mask: Uint8Array } {
  if (sparsity < 0 || sparsity >= 1) throw new RangeError(`sparsity must be in [0, 1), got ${sparsity}`);
  const bs = opts.blockSize ?? 128,
    percDamp = opts.percDamp ?? 0.01;
  const W = Float64Array.from(w);
  const H = Float64Array.from(Hin);
  // Dead inputs: never active in calibration -> weight column zeroed, H_jj = 1.
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] === 0) {
      H[j * cols + j] = 1;
      for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
    }
  }
  let meanDiag = 0;
  for (let j = 0; j < cols; j++) meanDiag += H[j * cols + j];
  const damp = (percDamp * meanDiag) / cols;
  for (let j = 0; j < cols; j++) H[j * cols + j] += damp;
  const Hinv = choleskyUpper(choleskyInverse(cholesky(H, cols), cols), cols);
  const mask = new Uint8Array(rows * cols).fill(1);
  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = Math.min(i1 + bs, cols),
      count = i2 - i1;
    // Mask for the block from w^2 / d^2 on the current (compensated) weights.
    const score = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < count; c++) {
        const d = Hinv[(i1 + c) * cols + (i1 + c)];
        score[r * count + c] = W[r * cols + i1 + c] ** 2 / (d * d);
      }
    const blockMask = topMask(score, Math.floor(rows * count * sparsity));
    const err = new Float64Array(rows * count);
    for (let c = 0; c < count; c++) {
      const col = i1 + c,
        d = Hinv[col * cols + col];
      for (let r = 0; r < rows; r++) {
        const wv = W[r * cols + col];
        const q = blockMask[r * count + c] ? wv : 0;
        const e = (wv - q) / d;
        err[r * count + c] = e;
        W[r * cols + col] = q;
        if (!blockMask[r * count + c]) mask[r * cols + col] = 0;
        if (e === 0) continue;
        // Compensate the rest of the block: W[r, col+1:i2] -= e * Hinv[col, col+1:i2].
        const hr = col * cols;
        for (let k = col + 1; k < i2; k++) W[r * cols + k] -= e * Hinv[hr + k];
      }
    }
    // Propagate the block's error to the remaining columns: W[:, i2:] -= Err * Hinv[i1:i2, i2:].
    if (i2 < cols) {
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < count; c++) {
          const e = err[r * count + c];
          if (e === 0) continue;
          const hr = (i1 + c) * cols;
          for (let k = i2; k < cols; k++) W[r * cols + k] -= e * Hinv[hr + k];
        }
      }
    }
  }
  const out = Float32Array.from(W);
  applyMask(out, mask);
  return { weight: out, mask };
}
