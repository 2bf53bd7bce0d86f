/**
 * @edgetune/engine: Edge-LLM on TensorFlow.js. A LLaMA-family model with PEFT LoRA, adaptive layer tuning
 * with early exits, exit voting, the data pipeline, pretraining, and the backend with our kernels.
 * Knows nothing of HTTP, Redis or SQL (see DESIGN.md).
 */
export * from './backend/index.js';
export { LlamaModel, causalLmLoss, LINEAR_NAMES } from './model/llama.js';
export type { Linear, LoraPair, DecoderLayer, ForwardContext, LinearName } from './model/llama.js';
export { loadLlamaConfig, parseLlamaConfig, toHfConfig, ModelConfigError } from './model/config.js';
export type { LlamaConfig } from './model/config.js';
export { attachLora, applyPeftAdapter, savePeftAdapter, readAdapterConfig, peftName, AdapterError, DEFAULT_LORA } from './model/lora.js';
export type { LoraConfig } from './model/lora.js';
export { readSafetensors, writeSafetensors, serializeSafetensors, readModelWeights, SafetensorsError } from './io/safetensors.js';
export type { NamedTensor, TensorToWrite } from './io/safetensors.js';
export * from './tokenizer/index.js';
export { DatasetError, isChatRecord, parseJsonlLine, parseJsonlText, readJsonl, readJsonlFile, validateRecord, classificationLabels, collate, encodePrompt, encodeRecord, recordAnswer, buildSpamAssassin, spamPrompt, spamPromptFromEmail, spamRecord, loadSpamAssassinCorpus } from './data/index.js';
export type { ChatRecord, DatasetErrorCode, PromptCompletionRecord, TrainingRecord, EncodedExample, SpamAssassinBuild } from './data/index.js';
export { AdaptiveTrainer, DEFAULT_TUNE } from './tune/trainer.js';
export type { TuneOptions, TuneMode, WindowSchedule, StepReport, TrainerState } from './tune/trainer.js';
export { runTuning, loadExamples, resolveTuneOptions, TuneConfigError } from './tune/run.js';
export type { TuneJobOptions, TuneJobReport } from './tune/run.js';
export { defaultExitLayers, validateExitLayers, createExits, ExitConfigError } from './tune/exits.js';
export type { ExitHead } from './tune/exits.js';
export { saveEdgeAdapter, loadEdgeAdapter, pathsOf, plainPath, EDGE_FORMAT } from './tune/artifacts.js';
export type { EdgeLlmManifest } from './tune/artifacts.js';
export { AdamW, scheduledLr, clipByGlobalNorm } from './tune/optim.js';
export type { LrSchedule } from './tune/optim.js';
export { combineExits, exitProbabilities, fitExitWeights, pathWeights, VOTING_RULES } from './infer/voting.js';
export type { VotingRule, ExitPath } from './infer/voting.js';
export { evaluatePaths, chooseRule, classTokensOf, EvaluationError } from './infer/evaluate.js';
export type { EvalReport, PathMetrics } from './infer/evaluate.js';
export { generate, classify } from './infer/generate.js';
export { lastWordItems, lastWordAccuracy, pairedSignTest } from './infer/last-word.js';
export type { LastWordItem, LastWordReport, LastWordOptions } from './infer/last-word.js';
export { pretrain, saveModelFolder, initLlamaWeights, unigramPerplexity, DEFAULT_PRETRAIN, SPECIAL_TOKENS } from './pretrain/pretrain.js';
export type { PretrainOptions, PretrainReport } from './pretrain/pretrain.js';
export { Rng } from './util/rng.js';
export { profileSensitivity, buildPolicy, compressModel } from './compress/luc.js';
export type { LucPolicy, SensitivityReport, CompressionReport, CalibrationSet, PolicyOptions, PruneMethod } from './compress/luc.js';
