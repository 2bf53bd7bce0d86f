// Fitted 2026-11-22T10:13:16.128Z on edgetune-tiny-llama (SGEMM peak 194 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 10.9372,
  actF: 4.10143,
  actAtt: 1.33736,
  actLora: 0.420761,
  tfFixed: 22321274,
  rssBase: 161003662,
  rssPerTfByte: 0.741424,
  mmEfficiency: 1.69238,
  prefixPassCost: 0.357822,
  msPerLayerPass: 13.5539,
  msPerLayerToken: 0,
  msPerAttScore: 0.0000118985,
  msPerStep: 0,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.00000162853,
};
