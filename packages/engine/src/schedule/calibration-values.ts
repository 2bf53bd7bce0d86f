// Fitted 2026-11-22T08:24:26.653Z on edgetune-tiny-llama (SGEMM peak 174 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 10.5529,
  actF: 3.95733,
  actAtt: 1.63545,
  actLora: 0.199409,
  tfFixed: 28287669,
  rssBase: 160138598,
  rssPerTfByte: 0.734048,
  mmEfficiency: 0.819203,
  prefixPassCost: 0.348994,
  msPerLayerPass: 4.62288,
  msPerLayerToken: 0.00470594,
  msPerAttScore: 0,
  msPerStep: 0,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.00000678244,
};
