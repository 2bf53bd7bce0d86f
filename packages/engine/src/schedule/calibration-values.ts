// Fitted 2026-11-22T06:58:53.324Z on edgetune-tiny-llama (SGEMM peak 166 GFLOP/s) by
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
  mmEfficiency: 3.08287,
  prefixPassCost: 0.22,
  msPerLayerPass: 6.3057,
  msPerLayerToken: 0.0270572,
  msPerAttScore: 0,
  msPerStep: 23.153,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.000015145,
};
