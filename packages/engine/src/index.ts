/**
 * @edgetune/engine: Edge-LLM on TensorFlow.js. A LLaMA-family model with PEFT LoRA, layer-wise unified
 * compression, adaptive layer tuning with early exits, exit voting, tokenization and batching, and the
 * backend with our kernels. Knows nothing of HTTP, Redis or SQL; what it shares with the service (HF
 * config parsing, the planner, JSONL validation) is @edgetune/core's.
 */
export * from './backend/index.js';
export { LlamaModel, causalLmLoss } from './model/llama.js';
export type { Linear, LoraPair, DecoderLayer, ForwardContext } from './model/llama.js';
export { initLlamaWeights, saveModelFolder } from './model/init.js';
export { attachLora, applyPeftAdapter, savePeftAdapter, readAdapterConfig, peftName, AdapterError, DEFAULT_LORA } from './model/lora.js';
export type { LoraConfig } from './model/lora.js';
export { readSafetensors, writeSafetensors, serializeSafetensors, readModelWeights, SafetensorsError } from './io/safetensors.js';
export type { NamedTensor, TensorToWrite } from './io/safetensors.js';
export * from './tokenizer/index.js';
export { classificationLabels, collate, encodeChatPrompt, encodePrompt, encodeRecord, recordAnswer } from './data/index.js';
export type { Batch, EncodedExample } from './data/index.js';
export { AdaptiveTrainer, DEFAULT_TUNE, TrainingDivergedError } from './tune/trainer.js';
export type { TuneOptions, TuneMode, WindowSchedule, StepReport, TrainerState, TrainerStateDict, HostTensor } from './tune/trainer.js';
export { saveTrainerCheckpoint, loadTrainerCheckpoint, hasTrainerCheckpoint, CHECKPOINT_FILES } from './tune/checkpoint.js';
export type { Stateful, CallbackStateDict } from './tune/checkpoint.js';
export { ValidationMonitor, isImprovement, defaultEvalEvery, trainerPaths } from './tune/early-stopping.js';
export type {
  ValidationPoint,
  ValidationMetric,
  EarlyStoppingOptions,
  StopReason,
  ValidationMonitorOptions,
} from './tune/early-stopping.js';
export { PrefixCache } from './tune/prefix-cache.js';
export { runTuning, loadExamples, resolveTuneOptions, evalEveryOf, planInputOf, TuneConfigError } from './tune/run.js';
export type { TuneJobOptions, TuneJobReport } from './tune/run.js';
export { createExits } from './tune/exits.js';
export type { ExitHead } from './tune/exits.js';
export { saveEdgeAdapter, loadEdgeAdapter, pathsOf, plainPath, EDGE_FORMAT } from './tune/artifacts.js';
export type { EdgeLlmManifest } from './tune/artifacts.js';
export { savePlainManifest } from './tune/artifacts.js';
export * from './retrieve/index.js';
export { AdamW, scheduledLr, clipByGlobalNorm } from './tune/optim.js';
export type { LrSchedule } from './tune/optim.js';
export { combineExits, exitProbabilities, fitExitWeights, pathWeights, VOTING_RULES } from './infer/voting.js';
export type { VotingRule, ExitPath } from './infer/voting.js';
export { evaluatePaths, chooseRule, classTokensOf, exactMatch, EvaluationError } from './infer/evaluate.js';
export type { EvalReport, PathMetrics, ExactMatchOptions, ExactMatchReport } from './infer/evaluate.js';
export { generate, generateBatch, classify } from './infer/generate.js';
export { complete } from './infer/complete.js';
export type { CompleteOptions, Completion } from './infer/complete.js';
export { loadWithAdapter } from './infer/load.js';
export type { LoadedAdapter } from './infer/load.js';
export { lastWordItems, lastWordAccuracy, pairedSignTest } from './infer/last-word.js';
export type { LastWordItem, LastWordReport, LastWordOptions } from './infer/last-word.js';
export { Rng } from './util/rng.js';
export { favourMemoryOverSpeed, memoryFavoured } from './util/v8-heap.js';
export { ProgressBar } from '@edgetune/core';
export { UsageError, need, numOpt, pick, runCli, nearest } from '@edgetune/core';
export type { Flags } from '@edgetune/core';
export { calibrationFromExamples, localDevice, measuredDevice, PlanNotFeasibleError } from './tune/run.js';
export { gpt2SplitRegex } from './tokenizer/byte-level.js';
export { profileSensitivity, buildPolicy, compressModel } from './compress/luc.js';
export type { LucPolicy, SensitivityReport, CompressionReport, CalibrationSet, PolicyOptions, PruneMethod } from './compress/luc.js';
export { synthModel, synthTensorPlan, shardTensors, SYNTH_MODEL_NAMES, SYNTH_FAMILIES, SynthModelError } from './synth/index.js';
export type { SynthModelOptions, SynthModelReport, SynthFamily } from './synth/index.js';
export { writeSafetensorsStream, safetensorsHeader, tensorBytes } from './io/safetensors-writer.js';
export type { TensorSpec, StreamDtype, ChunkFiller } from './io/safetensors-writer.js';
export { adviseLocally, advisorModelOf, formatRecommendation, modelFolders } from './schedule/advise.js';
export type { AdviseOptions } from './schedule/advise.js';
