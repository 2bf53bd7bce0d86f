/**
 * Prompt assembly for RAG: the k retrieved training examples, each its prompt followed by its completion,
 * joined by a blank line and placed before the prompt, within a token budget (LaMP's `create_prompt_generator`
 * keeps the retrieved profile within a share of the model's input length; OPPU prepends the retrieved history).
 */
import { isChatRecord, RAG_DEFAULTS, type TrainingRecord } from '@edgetune/core';
import type { EngineTokenizer } from '../tokenizer/index.js';
import { recordQuery, type RagDocument, type RagIndex } from './bm25.js';

/** RAG settings of a tuning job. */
export interface RagOptions {
  /** retrieved examples per prompt, default 2 */
  k?: number;
  /** fraction of max_length the retrieved examples may take, default 0.6 (LaMP keeps the input within its budget) */
  contextShare?: number;
}

export const DEFAULT_RAG: Required<RagOptions> = { k: RAG_DEFAULTS.k, contextShare: RAG_DEFAULTS.context_share };

/** The `rag` field of `edge_llm.json`: how prompts were augmented, and the size of `rag_index.json`. */
export interface RagManifest {
  k: number;
  context_share: number;
  /** documents in the index (training records) */
  documents: number;
}

/** Everything needed to augment prompts: the index and the settings, with the model's max_length in tokens. */
export interface RagAugmentation {
  index: RagIndex;
  k: number;
  contextShare: number;
  maxLength: number;
}

/** Options that cannot be used (k not a positive integer, contextShare outside [0, 1]). */
export class RagOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RagOptionsError';
  }
}

/** Joins retrieved examples, and the examples to the prompt. */
const SEPARATOR = '\n\n';

/** Defaults filled in and checked. @throws RagOptionsError naming the bad field. */
export function resolveRagOptions(o: RagOptions = {}): Required<RagOptions> {
  const r = { ...DEFAULT_RAG, ...o };
  if (!Number.isInteger(r.k) || r.k < 1) throw new RagOptionsError(`rag.k must be an integer >= 1, got ${o.k}`);
  if (!(r.contextShare >= 0 && r.contextShare <= 1)) throw new RagOptionsError(`rag.contextShare must be in [0, 1], got ${o.contextShare}`);
  return r;
}

/**
 * The retrieved examples as the text placed before a prompt: `prompt + completion` of each, best first,
 * joined by a blank line and ending with one; '' when none fits. Within `budgetTokens` (counted with
 * `tok`, no special tokens): the lowest-ranked examples are dropped first; when the best one alone is
 * over budget, it loses tokens from its start, so its completion (the answer) survives.
 */
export function assembleContext(tok: EngineTokenizer, docs: readonly RagDocument[], budgetTokens: number): string {
  const count = (s: string) => tok.encode(s, { addSpecialTokens: false }).length;
  const block = (texts: string[]) => texts.map((t) => t + SEPARATOR).join('');
  const kept = docs.map((d) => d.prompt + d.completion);
  while (kept.length > 1 && count(block(kept)) > budgetTokens) kept.pop();
  if (!kept.length || count(block(kept)) <= budgetTokens) return block(kept);
  // One example over budget: keep its last tokens; decoding and re-encoding may merge differently, so shrink until it fits.
  const ids = tok.encode(kept[0]!, { addSpecialTokens: false });
  for (let room = budgetTokens - count(SEPARATOR); room > 0; room--) {
    const text = block([tok.decode(ids.slice(ids.length - room), { skipSpecialTokens: true })]);
    if (count(text) <= budgetTokens) return text;
  }
  return '';
}

/**
 * The text placed before `query` ({@link assembleContext}) for its top-k documents, within
 * floor(contextShare x maxLength) tokens.
 * @param opts.exclude document index left out of retrieval (the example's own record, for training prompts)
 */
export function retrievedContext(tok: EngineTokenizer, rag: RagAugmentation, query: string, opts: { exclude?: number } = {}): string {
  const hits = rag.index.retrieve(query, rag.k, opts);
  return assembleContext(
    tok,
    hits.map((h) => h.document),
    Math.floor(rag.contextShare * rag.maxLength),
  );
}

/** `prompt` with its retrieved examples before it ({@link retrievedContext}); the prompt itself is never cut here. */
export function augmentPrompt(tok: EngineTokenizer, rag: RagAugmentation, prompt: string, opts: { exclude?: number } = {}): string {
  return retrievedContext(tok, rag, prompt, opts) + prompt;
}

/**
 * A record with its prompt augmented ({@link augmentPrompt}). Chat records are searched by their user
 * turns (as the index is, {@link recordQuery}) and get the examples before the content of their first user message.
 */
export function augmentRecord(
  tok: EngineTokenizer,
  rag: RagAugmentation,
  rec: TrainingRecord,
  opts: { exclude?: number } = {},
): TrainingRecord {
  if (!isChatRecord(rec)) return { prompt: augmentPrompt(tok, rag, rec.prompt, opts), completion: rec.completion };
  const first = rec.messages.findIndex((m) => m.role === 'user');
  const context = first >= 0 ? retrievedContext(tok, rag, recordQuery(rec), opts) : '';
  if (!context) return rec;
  return { messages: rec.messages.map((m, i) => (i === first ? { ...m, content: context + m.content } : m)) };
}
