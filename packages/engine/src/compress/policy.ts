/**
 * LUC policy: per-layer sparsity and bit-width from per-layer sensitivities (Edge-LLM, Yu et al.,
 * DAC 2024, §2), with the fixes the official code lacks: keyed by layer index, clipped to a range with the
 * excess redistributed so the average stays on budget (official code can exceed 1), an OWL-style variant
 * bounded to target +- lambda (Yin et al., ICML 2024), the paper's "more bits above mean sensitivity"
 * rule, and a budgeted bit allocator (greedy on marginal sensitivity per bit, HAWQ-V2 / SliM-LLM style).
 * Pure arithmetic: no TF.js, usable from the API.
 */

/** Error for an unsatisfiable budget or malformed sensitivities. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

/**
 * Scales `weights` (>= 0) to values in [lo, hi] whose mean is `target` (water-filling: clamp, hand the
 * excess or deficit to the unclamped entries in proportion to their weight, repeat).
 * @throws PolicyError when target is outside [lo, hi].
 */
export function allocateWithBounds(weights: number[], target: number, lo: number, hi: number): number[] {
  const L = weights.length;
  if (target < lo - 1e-12 || target > hi + 1e-12) throw new PolicyError(`target ${target} is outside [${lo}, ${hi}]`);
  const out = new Array<number>(L).fill(NaN);
  const free = new Set(weights.map((_, i) => i));
  for (let iter = 0; iter <= L; iter++) {
    let budget = target * L;
    for (let i = 0; i < L; i++) if (!free.has(i)) budget -= out[i];
    let wsum = 0;
    for (const i of free) wsum += weights[i];
    let changed = false;
    for (const i of free) out[i] = wsum > 0 ? (weights[i] / wsum) * budget : budget / free.size;
    for (const i of [...free]) {
      if (out[i] > hi) {
        out[i] = hi;
        free.delete(i);
        changed = true;
      } else if (out[i] < lo) {
        out[i] = lo;
        free.delete(i);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return out;
}

/**
 * The paper's inverse-sensitivity sparsity (official `pruning_schedular.py`, type "ordinary"):
 * s = min-max scaled sensitivity, u = 1 - s, r_l = u_l / sum(u) * L * target; then clipped to
 * [minSparsity, maxSparsity] with redistribution so the mean stays `target`.
 * @param sensitivity per layer (higher = more sensitive), e.g. mean normalised MSE over the sparsity grid.
 */
export function inverseSensitivitySparsity(
  sensitivity: number[],
  target: number,
  opts: { minSparsity?: number; maxSparsity?: number } = {},
): number[] {
  if (!sensitivity.length) throw new PolicyError('no layers');
  const lo = opts.minSparsity ?? 0,
    hi = opts.maxSparsity ?? 0.95;
  const mn = Math.min(...sensitivity),
    mx = Math.max(...sensitivity);
  const u = sensitivity.map((s) => (mx > mn ? 1 - (s - mn) / (mx - mn) : 1));
  return allocateWithBounds(u, target, lo, hi);
}

/**
 * OWL-style bounded sparsity: r_l = target + lambda * (1 - 2 * s_l) with s_l the min-max scaled
 * sensitivity, so the most sensitive layer gets target - lambda and the least target + lambda; then
 * re-centred on `target` within [target - lambda, target + lambda].
 */
export function owlSparsity(sensitivity: number[], target: number, lambda = 0.08): number[] {
  const mn = Math.min(...sensitivity),
    mx = Math.max(...sensitivity);
  const s = sensitivity.map((x) => (mx > mn ? (x - mn) / (mx - mn) : 0.5));
  const raw = s.map((x) => target + lambda * (1 - 2 * x));
  const lo = Math.max(0, target - lambda),
    hi = Math.min(0.99, target + lambda);
  const at = (shift: number) => raw.map((r) => Math.min(hi, Math.max(lo, r + shift)));
  // mean(clip(raw + shift)) is monotone in shift: bisect for the shift that lands on target.
  let a = -2 * lambda - 1,
    b = 2 * lambda + 1;
  for (let i = 0; i < 100; i++) {
    const m = (a + b) / 2;
    if (mean(at(m)) < target) a = m;
    else b = m;
  }
  return at((a + b) / 2);
}

/** The paper's bit rule: `high` bits where the layer's quantization sensitivity is above the mean, else `base`. */
export function meanRuleBits(sensitivity: number[], base = 4, high = 8): number[] {
  const m = mean(sensitivity);
  return sensitivity.map((s) => (s > m ? high : base));
}

/**
 * Budgeted bit allocation: minimise sum_l err_l(b_l) subject to mean_l b_l <= avgBits (layers weighted by
 * `sizes`, e.g. parameter counts), greedy on the best error reduction per extra bit-parameter.
 * @param errors errors[l][k] = sensitivity of layer l at candidates[k] (candidates ascending)
 * @throws PolicyError when even the lowest candidate exceeds the budget.
 */
export function budgetedBits(errors: number[][], candidates: number[], avgBits: number, sizes?: number[]): number[] {
  const L = errors.length,
    sz = sizes ?? new Array(L).fill(1);
  const total = sz.reduce((a, b) => a + b, 0);
  const choice = new Array<number>(L).fill(0);
  let used = sz.reduce((a, s) => a + s * candidates[0], 0);
  if (used > avgBits * total + 1e-9) throw new PolicyError(`average ${avgBits} bits is below the smallest candidate ${candidates[0]}`);
  for (;;) {
    let best = -1,
      bestGain = 0,
      bestCost = 0;
    for (let l = 0; l < L; l++) {
      const k = choice[l];
      if (k + 1 >= candidates.length) continue;
      const cost = sz[l] * (candidates[k + 1] - candidates[k]);
      if (used + cost > avgBits * total + 1e-9) continue;
      const gain = (errors[l][k] - errors[l][k + 1]) / cost;
      if (best < 0 || gain > bestGain) {
        best = l;
        bestGain = gain;
        bestCost = cost;
      }
    }
    if (best < 0) break;
    choice[best]++;
    used += bestCost;
  }
  return choice.map((k) => candidates[k]);
}

/** Uniform policy at the same budget (the baseline LUC is compared with). */
export function uniformPolicy(layers: number, sparsity: number, bits: number): { sparsity: number[]; bits: number[] } {
  return { sparsity: new Array(layers).fill(sparsity), bits: new Array(layers).fill(bits) };
}
