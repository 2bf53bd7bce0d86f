/**
 * @edgetune/core: what the engine, the API and the worker agree on, with no TF.js, no HTTP and no database:
 * the HF `config.json` parser, FLOP counts, the planner, LUC policy shapes, JSONL validation, exit layout,
 * the advisor's rules and recommendations, and the service's job vocabulary (ids, job configuration, statuses, queue contract, environment).
 */
export * from './names.js';
export * from './hf-config.js';
export * from './safetensors-index.js';
export * from './flops.js';
export * from './exits.js';
export * from './luc.js';
export * from './jsonl.js';
export * from './schedule/planner.js';
export * from './schedule/calibration.js';
export * from './service/config.js';
export * from './service/ids.js';
export * from './service/status.js';
export * from './service/jobconfig.js';
export * from './service/models.js';
export * from './service/fingerprint.js';
export * from './service/plan.js';
export * from './service/limits.js';
export * from './service/scratch.js';
export * from './service/queue.js';
export * from './service/inference.js';
export * from './service/workers.js';
export * from './service/webhooks.js';
export * from './advisor/rules.js';
export * from './advisor/recommend.js';
export * from './advisor/measure.js';
export * from './progress.js';
export * from './cli.js';
