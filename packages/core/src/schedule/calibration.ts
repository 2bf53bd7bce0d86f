/**
 * Cost-model coefficients of the planner, fitted to measurements of the engine by
 * `node packages/lab/scripts/calibrate-planner.mjs`, which rewrites calibration.json (data, beside this file)
 * and records every measured point and its forecast error in bench/results/planner-calibration.json.
 */
import calibration from './calibration.json' with { type: 'json' };

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
  /** process RSS = rssBase + rssPerTfByte x TF.js peak + JS-side weights and caches, bytes, as fitted to the
   *  calibration's short runs (a few synthetic examples, a bare engine process); the terms below add what
   *  those runs lack */
  rssBase: number;
  rssPerTfByte: number;
  /** RSS of a bare engine process (node, TF.js wasm backend, native addon) before it loads a model, bytes
   *  (measured): DeviceProfile.baseRssBytes above it shifts the forecast by the difference */
  rssAtStart: number;
  /** RSS a run grows by after the calibration's ~20 steps, by ~200 steps where it levels off (V8's heap and
   *  native buffers), bytes (measured on synthetic data) */
  rssLongRun: number;
  /** RSS per token of training data the process holds (the examples' JS arrays and V8's headroom over
   *  them), bytes (measured: many examples vs a few, at the same steps) */
  rssPerDataToken: number;
  /** achieved fraction of the SGEMM peak on the model's matmuls. Fitted jointly with msPerLayerToken, with
   *  which FLOPs are nearly collinear on one model shape, so the pair, not this value alone, is meaningful
   *  (a value above 1 means the per-token term carries most of the time) */
  mmEfficiency: number;
  /** cost of a frozen-prefix layer (forward only, off the tape) relative to a window layer's forward +
   *  backward; the time model counts layer-equivalents E = window layers + prefixPassCost x prefix layers */
  prefixPassCost: number;
  /** per layer-equivalent overhead (kernel dispatch), ms */
  msPerLayerPass: number;
  /** per layer-equivalent per token (elementwise work: norms, RoPE, SwiGLU, LoRA branch), ms */
  msPerLayerToken: number;
  /** per layer-equivalent per attention score (batch x heads x T x T: softmax and its gradient), ms */
  msPerAttScore: number;
  /** per optimizer step overhead, ms */
  msPerStep: number;
  /** per parameter updated by AdamW each step (gradients, clipping, update), ms */
  msPerUpdatedParam: number;
  /** per weight dequantized just in time (packed layers), ms */
  msPerDequantElem: number;
}

/** The fitted values (calibration.json, written by the calibration script). */
export const CALIBRATION: CostCoefficients = calibration.coefficients;
