// Fitted 2026-11-22T10:27:08.250Z on edgetune-tiny-llama (SGEMM peak 187 GFLOP/s) by
// `node packages/engine/scripts/calibrate-planner.mjs`; points and errors: bench/results/planner-calibration.json.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 10.9372,
  actF: 4.10143,
  actAtt: 1.33736,
  actLora: 0.420761,
  tfFixed: 22321274,
  rssBase: 156077592,
  rssPerTfByte: 0.770995,
  mmEfficiency: 0.873006,
  prefixPassCost: 0.337147,
  msPerLayerPass: 3.71074,
  msPerLayerToken: 0.00441889,
  msPerAttScore: 0,
  msPerStep: 0,
  msPerUpdatedParam: 0.00000608423,
  msPerDequantElem: 2.27118e-7,
};
