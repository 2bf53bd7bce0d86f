// PROVISIONAL values set by hand from one profile (tmp/prof.mjs: 4M-param model, B=8, T=256, wasm +
// OpenBLAS, 2026-11-22), until `node packages/engine/scripts/calibrate-planner.mjs` rewrites this file.
import type { CostCoefficients } from './calibration.js';

export const FITTED: CostCoefficients = {
  actD: 40,
  actF: 12,
  actAtt: 6,
  actLora: 4,
  tfFixed: 8388608,
  rssBase: 188743680,
  rssPerTfByte: 0.8,
  bwdRatio: 1.5,
  mmEfficiency: 0.5,
  msPerLayerPass: 2,
  msPerLayerToken: 0.01,
  msPerStep: 20,
};
