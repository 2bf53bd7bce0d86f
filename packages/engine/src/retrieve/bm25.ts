/**
 * BM25 index over training records, for retrieval-augmented generation (RAG): the retriever of LaMP
 * (Salemi et al., `LaMP/prompts/prompts.py`) and OPPU (Tan et al.), Okapi BM25 over the records' prompts.
 * Built with `minisearch`; the documents travel with the index so that a bundle's `rag_index.json` is all
 * retrieval needs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import MiniSearch, { type Options } from 'minisearch';
import { isChatRecord, type TrainingRecord } from '@edgetune/core';
import { recordAnswer } from '../data/encode.js';

/** File name of the serialized index in a tuning output / bundle. */
export const RAG_INDEX_FILE = 'rag_index.json';
export const RAG_INDEX_FORMAT = 'edgetune.rag_index/1';

/** One retrievable training example: the text a prompt is searched against, and its answer. */
export interface RagDocument {
  /** the prompt (prompt/completion records) or the user turns joined by newlines (chat records) */
  prompt: string;
  /** the completion, or the final assistant message */
  completion: string;
}

/** One hit of {@link RagIndex.retrieve}. */
export interface Retrieved {
  /** 0-based position of the document in the training file */
  index: number;
  /** Okapi BM25 score (sum over the query's terms, a repeated query term counted each time) */
  score: number;
  document: RagDocument;
}

/** Contents of `rag_index.json`. */
export interface RagIndexJson {
  format: typeof RAG_INDEX_FORMAT;
  documents: RagDocument[];
  /** minisearch's serialized inverted index (`MiniSearch#toJSON`) */
  index: ReturnType<MiniSearch['toJSON']>;
}

/** A serialized index that cannot be read. */
export class RagIndexError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RagIndexError';
  }
}

/** minisearch's tokenizer (splits on whitespace and punctuation), without the empty strings it leaves at the ends. */
const splitWords = MiniSearch.getDefault('tokenize') as (text: string) => string[];

/**
 * minisearch settings. Okapi BM25 is `d = 0` (minisearch defaults to BM25+, d = 0.5), with the usual
 * k1 = 1.2, b = 0.75, and Lucene's idf, ln(1 + (N - n + 0.5) / (n + 0.5)); exact terms only (no prefix or
 * fuzzy matches). Terms are words (LaMP splits on whitespace; here punctuation is not glued to them),
 * lower-cased by minisearch's default term processing. minisearch measures a document's length in distinct
 * terms. Functions do not serialize, so loading uses these same options.
 */
const OPTIONS: Options<{ id: number; text: string }> = {
  fields: ['text'],
  tokenize: (text) => splitWords(text).filter((t) => t.length > 0),
  storeFields: [],
  searchOptions: { bm25: { k: 1.2, b: 0.75, d: 0 }, prefix: false, fuzzy: false, combineWith: 'OR' },
};

/** The text a record is searched by and indexed under: its prompt, or its user turns. */
export function recordQuery(rec: TrainingRecord): string {
  if (!isChatRecord(rec)) return rec.prompt;
  return rec.messages
    .slice(0, -1)
    .filter((m) => m.role === 'user')
    .map((m) => m.content)
    .join('\n');
}

/** The retrievable document of a record ({@link recordQuery} + its answer). */
export function recordDocument(rec: TrainingRecord): RagDocument {
  return { prompt: recordQuery(rec), completion: recordAnswer(rec) };
}

/** Okapi BM25 over the prompts of a set of training records; document i is record i. */
export class RagIndex {
  private constructor(
    readonly documents: readonly RagDocument[],
    private readonly search: MiniSearch<{ id: number; text: string }>,
  ) {}

  /** Indexes the records in file order. */
  static build(records: readonly TrainingRecord[]): RagIndex {
    const documents = records.map(recordDocument);
    const search = new MiniSearch(OPTIONS);
    search.addAll(documents.map((d, id) => ({ id, text: d.prompt })));
    return new RagIndex(documents, search);
  }

  /** @throws RagIndexError for another format or a document count that disagrees with the index. */
  static fromJSON(json: RagIndexJson, source = 'rag index'): RagIndex {
    if (json?.format !== RAG_INDEX_FORMAT)
      throw new RagIndexError(`${source}: format ${JSON.stringify(json?.format)} is not ${RAG_INDEX_FORMAT}`);
    const search = MiniSearch.loadJS(json.index, OPTIONS);
    if (search.documentCount !== json.documents.length)
      throw new RagIndexError(`${source}: the index holds ${search.documentCount} documents, documents lists ${json.documents.length}`);
    return new RagIndex(json.documents, search);
  }

  /** Reads `rag_index.json` (see {@link save}). @throws RagIndexError for an unreadable file. */
  static load(file: string): RagIndex {
    let json: RagIndexJson;
    try {
      json = JSON.parse(readFileSync(file, 'utf8')) as RagIndexJson;
    } catch (e) {
      throw new RagIndexError(`${file}: ${(e as Error).message}`);
    }
    return RagIndex.fromJSON(json, file);
  }

  toJSON(): RagIndexJson {
    return { format: RAG_INDEX_FORMAT, documents: [...this.documents], index: this.search.toJSON() };
  }

  save(file: string): void {
    writeFileSync(file, JSON.stringify(this.toJSON()));
  }

  /**
   * The `k` best documents for `query`, best first; ties go to the lower document index. Only documents
   * sharing a term with the query are returned, so there may be fewer than `k`.
   * @param opts.exclude a document index never returned (a training example's own record)
   */
  retrieve(query: string, k: number, opts: { exclude?: number } = {}): Retrieved[] {
    if (k <= 0) return [];
    const hits = this.search
      .search(query)
      .filter((r) => r.id !== opts.exclude)
      // minisearch multiplies a document's summed score by its number of distinct matched query terms
      // (a coordination factor); dividing it out leaves the Okapi BM25 sum.
      .map((r) => ({ index: r.id as number, score: r.score / Math.max(1, r.queryTerms.length) }))
      .sort((a, b) => b.score - a.score || a.index - b.index);
    return hits.slice(0, k).map((h) => ({ ...h, document: this.documents[h.index]! }));
  }
}
