/**
 * Fast seeded normal samples written straight as BF16: a 32-bit xoshiro128** draw (Blackman & Vigna 2018,
 * "Scrambled linear pseudorandom number generators") gives two 16-bit indices into a table of the 65536
 * N(0, std) quantiles at (i + 0.5) / 65536, rounded to BF16. BF16 keeps 8 significand bits, so the table is as
 * fine as the format; the tails are cut at about 4.3 std (the outermost quantile).
 */

/** BF16 bits of a float32 value, round to nearest even (as torch `.to(torch.bfloat16)`). */
export function toBf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) return (u >>> 16) | 0x40; // NaN stays NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 value of BF16 bits. */
export function fromBf16Bits(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
}

/**
 * Standard normal quantile (inverse CDF) by Acklam's rational approximation with one Halley step
 * (relative error below 1e-9; P. J. Acklam, "An algorithm for computing the inverse normal cumulative
 * distribution function"). @throws RangeError outside (0, 1).
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`quantile of ${p} is outside (0, 1)`);
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  let x: number;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  } else if (p <= 1 - lo) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
      (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x =
      -(((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  // One Halley step on erfc for full double precision.
  const e = 0.5 * erfc(-x / Math.SQRT2) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** Complementary error function (Numerical Recipes `erfcc`, fractional error below 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

const tables = new Map<number, Uint16Array>();

/** The 65536-entry BF16 table of N(0, std) quantiles (cached per std). */
export function bf16NormalTable(std: number): Uint16Array {
  let t = tables.get(std);
  if (!t) {
    t = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) t[i] = toBf16Bits(std * normalQuantile((i + 0.5) / 65536));
    tables.set(std, t);
  }
  return t;
}

/** 32-bit FNV-1a of a string (seeds per tensor name). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A stream of BF16 N(0, std) samples, seeded by (`seed`, `key`) so each tensor's values depend only on the seed
 * and its name, not on file order or chunk size.
 */
export class Bf16NormalStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private readonly table: Uint16Array;

  constructor(seed: number, key: string, std: number) {
    this.table = bf16NormalTable(std);
    // splitmix32 expands the 32-bit seed into xoshiro's four state words (never all zero).
    let x = (fnv1a(key) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /**
   * Fills `out` (pairs of BF16 values packed little-endian in 32-bit words: element 2i in the low half) with the
   * next 2 * out.length samples.
   */
  fill(out: Uint32Array): void {
    const t = this.table;
    let s0 = this.s0,
      s1 = this.s1,
      s2 = this.s2,
      s3 = this.s3;
    for (let i = 0; i < out.length; i++) {
      const m = Math.imul(s1, 5);
      const r = Math.imul((m << 7) | (m >>> 25), 9);
      const tt = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= tt;
      s3 = (s3 << 11) | (s3 >>> 21);
      out[i] = t[r & 0xffff]! | (t[r >>> 16]! << 16);
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }
}
