/** Training data: JSONL parsing/validation, tokenization with loss masks, batching, and the SpamAssassin task. */
export {
  DatasetError,
  isChatRecord,
  parseJsonlLine,
  parseJsonlText,
  readJsonl,
  readJsonlFile,
  validateRecord,
} from './jsonl.js';
export type { ChatRecord, DatasetErrorCode, PromptCompletionRecord, TrainingRecord } from './jsonl.js';
export { IGNORE_INDEX, classificationLabels, collate, encodePrompt, encodeRecord, recordAnswer } from './encode.js';
export type { Batch, EncodedExample } from './encode.js';
export {
  DEFAULT_BODY_CHARS,
  DEFAULT_SPLIT_SEED,
  SPAM_COMPLETION,
  SPAM_QUESTION,
  SUBJECT_CHARS,
  buildSpamAssassin,
  collapseWhitespace,
  loadSpamAssassinCorpus,
  spamLabelOfGroup,
  spamPrompt,
  spamPromptFromEmail,
  spamRecord,
  spamSplitOf,
} from './spam-assassin.js';
export type { SpamAssassinBuild, SpamAssassinItem } from './spam-assassin.js';
export { buildCorpusContinuation, continuationRecords, CONTINUATION_COMPLETION_CHARS, CONTINUATION_PROMPT_CHARS } from './corpus-continuation.js';
export type { CorpusContinuationBuild } from './corpus-continuation.js';
export { decodeEncodedWords, decodeQuotedPrintable, htmlToText, parseEmail, parseEntity } from './mime.js';
export type { MimeEntity } from './mime.js';
