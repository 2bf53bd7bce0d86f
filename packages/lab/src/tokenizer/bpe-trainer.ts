/**
 * The byte-level BPE trainer lives in the engine (the engine builds tokenizers for synthetic models and must not
 * import the lab); re-exported here for the lab's data builders and scripts.
 */
export { tokenizerConfigFor, trainByteLevelBpe } from '@edgetune/engine';
export type { BpeTrainOptions, TokenizerConfigOptions, TokenizerJson } from '@edgetune/engine';
