/** The index in a tuning output / bundle: `rag_index.json` beside `edge_llm.json`, whose `rag` field says how to use it. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RAG_INDEX_FILE, RagIndex, RagIndexError } from './bm25.js';
import type { RagAugmentation, RagManifest } from './prompt.js';

/** Writes `<dir>/rag_index.json`. @returns the manifest's `rag` field. */
export function saveRagIndex(dir: string, rag: RagAugmentation): RagManifest {
  rag.index.save(join(dir, RAG_INDEX_FILE));
  return { k: rag.k, context_share: rag.contextShare, documents: rag.index.documents.length };
}

/**
 * The augmentation an adapter folder asks for: null when its manifest has no `rag` field.
 * @param manifest `edge_llm.json`'s `rag` and `max_length` (tokens; 256 when absent, the tuning default)
 * @throws RagIndexError when `rag_index.json` is missing or unreadable.
 */
export function loadRagAugmentation(dir: string, manifest: { rag?: RagManifest; max_length?: unknown }): RagAugmentation | null {
  if (!manifest.rag) return null;
  const file = join(dir, RAG_INDEX_FILE);
  if (!existsSync(file)) throw new RagIndexError(`${dir}: edge_llm.json has a rag field but there is no ${RAG_INDEX_FILE}`);
  return {
    index: RagIndex.load(file),
    k: manifest.rag.k,
    contextShare: manifest.rag.context_share,
    maxLength: Number(manifest.max_length ?? 256),
  };
}
