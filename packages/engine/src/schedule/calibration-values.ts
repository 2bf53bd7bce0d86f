// Fitted 2026-12-04T22:12:25.235Z on edgetune-tiny-llama (SGEMM peak 257 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`;
// points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 12.5193,
  actF: 4.69473,
  actAtt: 0.953587,
  actLora: 0,
  tfFixed: 8858854,
  rssBase: 129330262,
  rssPerTfByte: 0.762866,
  rssAtStart: 107229184,
  rssLongRun: 18157568,
  rssPerDataToken: 41.9458,
  mmEfficiency: 1.21387,
  prefixPassCost: 0.311003,
  msPerLayerPass: 1.60166,
  msPerLayerToken: 0.00621213,
  msPerAttScore: 0,
  msPerStep: 6.36067,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.00000395955,
};
