// Fitted 2026-11-22T11:04:53.766Z on edgetune-tiny-llama (SGEMM peak 200 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; RSS growth terms measured 2026-12-04T16:41:01.162Z (--growth);
// points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 12.4954,
  actF: 4.68577,
  actAtt: 0.967131,
  actLora: 0,
  tfFixed: 8987294,
  rssBase: 157149888,
  rssPerTfByte: 0.774213,
  rssAtStart: 96751616,
  rssLongRun: 26476544,
  rssPerDataToken: 24.0759,
  mmEfficiency: 1.00259,
  prefixPassCost: 0.341539,
  msPerLayerPass: 3.20162,
  msPerLayerToken: 0.00920293,
  msPerAttScore: 0,
  msPerStep: 7.3325,
  msPerUpdatedParam: 0,
  msPerDequantElem: 0.00000603583,
};
