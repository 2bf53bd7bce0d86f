/** RAG: a BM25 index over the training examples, and prompt assembly within a token budget. */
export { RagIndex, RagIndexError, recordDocument, recordQuery, RAG_INDEX_FILE, RAG_INDEX_FORMAT } from './bm25.js';
export type { RagDocument, RagIndexJson, Retrieved } from './bm25.js';
export {
  assembleContext,
  augmentPrompt,
  augmentRecord,
  DEFAULT_RAG,
  RagOptionsError,
  resolveRagOptions,
  retrievedContext,
} from './prompt.js';
export type { RagAugmentation, RagManifest, RagOptions } from './prompt.js';
export { loadRagAugmentation, saveRagIndex } from './bundle.js';
