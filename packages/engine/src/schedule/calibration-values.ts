// Fitted 2026-11-22T05:47:29.860Z on edgetune-tiny-llama (SGEMM peak 166 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 14.698,
  actF: 5.51174,
  actAtt: 1.28678,
  actLora: 50.393,
  tfFixed: 26205862,
  rssBase: 163837901,
  rssPerTfByte: 0.808724,
  mmEfficiency: 0.870388,
  msPerLayerPass: 6.51323,
  msPerLayerToken: 0.00475532,
  msPerStep: 0,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.0000159817,
};
