/**
 * Puts a trained tokenizer into a real model's id layout: special tokens at the family's ids and the vocabulary
 * padded with labelled filler tokens up to the model's `vocab_size`, so every id the embedding has is a token.
 */
import { specialAddedToken, type TokenizerJson } from './bpe-trainer.js';

/** A token at a fixed id, e.g. Llama 3's `<|begin_of_text|>` at 128000. `special` defaults to true. */
export interface PlacedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** The filler token at id `id`: a vocabulary entry that no merge can build, so `encode` never produces it. */
export function fillerToken(id: number): string {
  return `<edgetune_filler_${id}>`;
}

/**
 * Returns a copy of `tj` whose ids run 0..vocabSize-1: the trained vocabulary keeps its ids (0..m-1), `placed`
 * tokens become `added_tokens` at their ids (as Llama 3 and Qwen2 list their specials), and every other id
 * from m up is a filler token (see {@link fillerToken}) in the model vocabulary.
 * @throws RangeError when the trained vocabulary is not 0..m-1, a placed id is below m, not below `vocabSize`
 *   or repeated, or a placed token is already in the vocabulary.
 */
export function layoutVocabulary(tj: TokenizerJson, vocabSize: number, placed: readonly PlacedToken[] = []): TokenizerJson {
  const vocab: Record<string, number> = { ...tj.model.vocab };
  const ids = new Set(Object.values(vocab));
  for (const t of tj.added_tokens) ids.add(t.id);
  const m = ids.size;
  for (let i = 0; i < m; i++) if (!ids.has(i)) throw new RangeError(`trained vocabulary has a gap at id ${i}`);
  if (vocabSize < m) throw new RangeError(`vocabSize ${vocabSize} is below the trained vocabulary (${m} tokens)`);
  const byId = new Map<number, PlacedToken>();
  for (const p of placed) {
    if (!Number.isInteger(p.id) || p.id < m || p.id >= vocabSize) {
      throw new RangeError(`token ${p.content} at id ${p.id} must sit in [${m}, ${vocabSize})`);
    }
    if (byId.has(p.id)) throw new RangeError(`two tokens at id ${p.id}`);
    if (p.content in vocab) throw new RangeError(`token ${p.content} is already in the vocabulary`);
    byId.set(p.id, p);
  }
  const added = tj.added_tokens.slice();
  for (let id = m; id < vocabSize; id++) {
    const p = byId.get(id);
    if (p) added.push(specialAddedToken(id, p.content, p.special ?? true));
    else vocab[fillerToken(id)] = id;
  }
  return { ...tj, added_tokens: added, model: { ...tj.model, vocab } };
}
