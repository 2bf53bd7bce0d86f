// Fitted 2026-11-22T07:38:45.788Z on edgetune-tiny-llama (SGEMM peak 194 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 7.04309,
  actF: 2.64116,
  actAtt: 1.63789,
  actLora: 24.1477,
  tfFixed: 28336372,
  rssBase: 157405811,
  rssPerTfByte: 0.747087,
  mmEfficiency: 1000000000,
  prefixPassCost: 0.345916,
  msPerLayerPass: 1.66858,
  msPerLayerToken: 0.0183907,
  msPerAttScore: 0.00000572583,
  msPerStep: 20.0533,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.0000133099,
};
