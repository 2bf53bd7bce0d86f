/**
 * Cost-model coefficients of the planner, fitted to measurements of this engine.
 * PROVISIONAL: written by hand from one profile (tmp/prof.mjs, 4M-param model, B=8, T=256, wasm +
 * OpenBLAS, 2026-11-22); `node packages/engine/scripts/calibrate-planner.mjs` refits and rewrites them.
 */
export interface CostCoefficients {
  /** activation floats kept per layer on the tape, per token per hidden unit */
  actD: number;
  /** ... per token per MLP unit */
  actF: number;
  /** ... per attention score (batch x heads x T x T) */
  actAtt: number;
  /** ... per token per LoRA rank per wrapped linear */
  actLora: number;
  /** TF.js bytes outside weights/activations (caches, scalars) */
  tfFixed: number;
  /** process RSS = rssBase + rssPerTfByte x TF.js peak + JS-side weights and caches */
  rssBase: number;
  rssPerTfByte: number;
  /** backward cost relative to forward, per layer on the tape */
  bwdRatio: number;
  /** achieved fraction of the SGEMM peak on the model's matmuls */
  mmEfficiency: number;
  /** per layer pass overhead (kernel dispatch), ms */
  msPerLayerPass: number;
  /** per layer pass per token (elementwise work), ms */
  msPerLayerToken: number;
  /** per optimizer step overhead (AdamW, clipping), ms */
  msPerStep: number;
}

export const CALIBRATION: CostCoefficients = {
  actD: 40,
  actF: 12,
  actAtt: 6,
  actLora: 4,
  tfFixed: 8 * 2 ** 20,
  rssBase: 180 * 2 ** 20,
  rssPerTfByte: 0.8,
  bwdRatio: 1.5,
  mmEfficiency: 0.5,
  msPerLayerPass: 2,
  msPerLayerToken: 0.01,
  msPerStep: 20,
};
