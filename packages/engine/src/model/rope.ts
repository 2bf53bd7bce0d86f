/**
 * Rotary-embedding inverse frequencies of a LLaMA-family config (transformers `modeling_rope_utils.py`):
 * the default `1 / theta^(2i/headDim)`, and the `linear` and `llama3` scalings of `rope_scaling`.
 */
import type { LlamaConfig, RopeScaling } from '@edgetune/core';

/**
 * inv_freq [headDim/2] in float32 (HF builds it in float32): entry i rotates dimensions i and i + headDim/2.
 * Without `ropeScaling` this is `_compute_default_rope_parameters`; `linear` divides every entry by
 * `factor` (`_compute_linear_scaling_rope_parameters`); `llama3` follows `_compute_llama3_parameters`.
 * Both scalings keep the attention factor 1, so cos/sin are not rescaled.
 */
export function ropeInvFreq(c: LlamaConfig): Float32Array {
  const half = c.headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / c.ropeTheta ** ((2 * i) / c.headDim));
  const s = c.ropeScaling;
  if (!s) return inv;
  if (s.ropeType === 'linear') return inv.map((f) => f / s.factor);
  return inv.map((f) => llama3InvFreq(f, s));
}

/**
 * One llama3-scaled inverse frequency: wavelengths 2*pi/f longer than original / low_freq_factor are
 * divided by `factor`, those shorter than original / high_freq_factor kept, and the band between
 * interpolated: (1 - smooth) * f / factor + smooth * f, smooth = (original / wavelen - low) / (high - low).
 */
function llama3InvFreq(f: number, s: Extract<RopeScaling, { ropeType: 'llama3' }>): number {
  const wavelen = (2 * Math.PI) / f;
  const original = s.originalMaxPositionEmbeddings;
  if (wavelen > original / s.lowFreqFactor) return f / s.factor;
  if (wavelen < original / s.highFreqFactor) return f;
  const smooth = (original / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * (f / s.factor) + smooth * f;
}
