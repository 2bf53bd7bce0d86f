/** Training data for the engine: tokenization with loss masks and batching (JSONL validation is @edgetune/core's). */
export { classificationLabels, collate, encodeChatPrompt, encodePrompt, encodeRecord, recordAnswer } from './encode.js';
export type { Batch, EncodedExample } from './encode.js';
