/**
 * Symmetric integer quantization (LLM-QAT `utils_quant.py` SymQuantizer, as Edge-LLM §2 uses it):
 * scale per output channel (or per group of `groupSize` input columns), s = max|w| / (2^(b-1) - 1),
 * q = clamp(round(w / s), -(2^(b-1) - 1), 2^(b-1) - 1). Zeros stay zero, so pruning masks survive.
 *
 * Storage: 8-bit as Int8Array, 2..4-bit packed two values per byte (low nibble first, offset by 8 so a
 * nibble holds 0..15), scales float32. Dequantization happens just in time, layer by layer.
 */
import * as tf from '@tensorflow/tfjs-core';

export type WeightBits = 2 | 3 | 4 | 8;
export const WEIGHT_BITS: WeightBits[] = [2, 3, 4, 8];

/** A quantized [rows, cols] weight. */
export interface PackedWeight {
  bits: WeightBits;
  rows: number;
  cols: number;
  /** 0 = one scale per row (per output channel); else columns per group */
  groupSize: number;
  /** [rows * groupsPerRow] */
  scales: Float32Array;
  /** 8-bit: Int8Array [rows*cols]; <= 4-bit: Uint8Array [ceil(rows*cols/2)] */
  data: Int8Array | Uint8Array;
}

function groupsPerRow(cols: number, groupSize: number): number {
  return groupSize > 0 ? Math.ceil(cols / groupSize) : 1;
}

/**
 * Quantizes w [rows*cols] row-major.
 * @throws RangeError for unsupported bits or a group size that is not positive.
 */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, bits: WeightBits, groupSize = 0): PackedWeight {
  if (!WEIGHT_BITS.includes(bits)) throw new RangeError(`bits must be one of ${WEIGHT_BITS.join(', ')}, got ${bits}`);
  if (groupSize < 0 || !Number.isInteger(groupSize)) throw new RangeError(`groupSize must be a non-negative integer, got ${groupSize}`);
  const qmax = 2 ** (bits - 1) - 1;
  const g = groupsPerRow(cols, groupSize),
    gs = groupSize > 0 ? groupSize : cols;
  const scales = new Float32Array(rows * g);
  const q = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < g; k++) {
      const c0 = k * gs,
        c1 = Math.min(cols, c0 + gs);
      let m = 0;
      for (let c = c0; c < c1; c++) m = Math.max(m, Math.abs(w[r * cols + c]));
      const s = m > 0 ? m / qmax : 1;
      scales[r * g + k] = s;
      for (let c = c0; c < c1; c++) q[r * cols + c] = Math.max(-qmax, Math.min(qmax, Math.round(w[r * cols + c] / s)));
    }
  }
  if (bits === 8) return { bits, rows, cols, groupSize, scales, data: q };
  const packed = new Uint8Array(Math.ceil((rows * cols) / 2));
  for (let i = 0; i < q.length; i++) {
    const nib = (q[i] + 8) & 0xf;
    packed[i >> 1] |= i & 1 ? nib << 4 : nib;
  }
  return { bits, rows, cols, groupSize, scales, data: packed };
}

/** Float32 weights back from a PackedWeight. */
export function dequantizeWeight(p: PackedWeight): Float32Array {
  const { rows, cols, groupSize } = p;
  const g = groupsPerRow(cols, groupSize),
    gs = groupSize > 0 ? groupSize : cols;
  const out = new Float32Array(rows * cols);
  const sc = p.scales;
  // Monomorphic loops per width, the scale hoisted per group: this runs for every layer of every forward.
  if (p.bits === 8) {
    const d = p.data as Int8Array;
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      for (let k = 0; k < g; k++) {
        const s = sc[r * g + k],
          c1 = Math.min(cols, (k + 1) * gs);
        for (let c = k * gs; c < c1; c++) out[base + c] = d[base + c] * s;
      }
    }
    return out;
  }
  const d = p.data as Uint8Array;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < g; k++) {
      const s = sc[r * g + k],
        c1 = Math.min(cols, (k + 1) * gs);
      for (let c = k * gs; c < c1; c++) {
        const i = base + c;
        out[i] = (((d[i >> 1] >> ((i & 1) << 2)) & 0xf) - 8) * s;
      }
    }
  }
  return out;
}

/** Bytes a packed weight occupies (data + scales). */
export function packedBytes(p: PackedWeight): number {
  return p.data.byteLength + p.scales.byteLength;
}

/**
 * Fake quantization of activations with a straight-through estimator (LLM-QAT): symmetric per row of
 * the last axis (per token), forward round(x/s)*s, backward passes dy unchanged (abs-max scaling never
 * clips, so the STE mask is all ones). x [n, d] -> same shape.
 */
export function fakeQuantActivations(x: tf.Tensor2D, bits: number): tf.Tensor2D {
  if (bits >= 16) return x;
  const qmax = 2 ** (bits - 1) - 1;
  const f = tf.customGrad(((xi: tf.Tensor) => {
    const value = tf.tidy(() => {
      const m = tf.max(tf.abs(xi), -1, true);
      const s = tf.div(tf.maximum(m, 1e-8), qmax);
      return tf.mul(tf.round(tf.div(xi, s)), s);
    });
    return { value, gradFunc: (dy: tf.Tensor) => [dy] };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as tf.Tensor2D;
}
