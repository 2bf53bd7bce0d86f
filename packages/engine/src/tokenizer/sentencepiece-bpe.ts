/**
 * SentencePiece-style BPE with byte fallback, as the Hugging Face conversions of Llama 2, TinyLlama and Mistral
 * write it in `tokenizer.json` (transformers `convert_slow_tokenizer.py` LlamaConverter): model BPE with
 * `byte_fallback: true`, `<0x00>`..`<0xFF>` byte tokens, spaces shown as "▁" (U+2581) and a "▁" put in front of
 * the text, decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(1 left)].
 *
 * Training merges characters (not bytes) inside "▁"-led words, cut as SentencePiece's BPE trainer cuts them for
 * Llama 2 (`split_by_whitespace`, `split_by_unicode_script`, `split_digits`); characters left out of the
 * vocabulary are encoded as their UTF-8 byte tokens.
 */
import {
  bosTemplateProcessing,
  checkSpecialTokens,
  cutSpecialTokens,
  learnBpeMerges,
  specialAddedToken,
  type TokenizerJson,
} from './bpe-trainer.js';

/** The SentencePiece whitespace symbol U+2581 "▁". */
export const SPIECE_UNDERLINE = '\u2581';

/** The byte-fallback token of byte `b`: `<0x0A>` style, upper-case hex (SentencePiece `ByteToPiece`). */
export function byteFallbackToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/**
 * Where the "▁" prefix and space replacement happen:
 * - `normalizer`: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer (the `legacy` HF Llama
 *   form, e.g. meta-llama/Llama-2-7b-hf and TinyLlama);
 * - `metaspace`: pre-tokenizer Metaspace(replacement "▁", prepend_scheme "first", split false), no normalizer
 *   (the form transformers writes for `legacy: false`, e.g. Mistral v0.3). A leading space of the text is then
 *   absorbed by the prefix, as in Rust `tokenizers`.
 */
export type SentencePieceForm = 'normalizer' | 'metaspace';

/** Options of {@link trainSentencePieceBpe}. */
export interface SentencePieceBpeOptions {
  /**
   * Target vocabulary size in tokens: specials + 256 byte tokens + characters + merges. Training stops early when
   * no pair reaches `minFrequency`. When the corpus has more distinct characters than fit, the rarest are left
   * to byte fallback.
   */
  vocabSize: number;
  /** Special tokens with ids 0..n-1. Default `['<unk>', '<s>', '</s>']` (the Llama 2 ids). */
  specialTokens?: string[];
  /** Unknown token (must be a special). Default `<unk>`. */
  unkToken?: string;
  /** Token put in front by `encode` with special tokens (must be a special), or null for none. Default `<s>`. */
  bosToken?: string | null;
  /** Smallest count (in word occurrences) a pair needs to be merged. Default 2. */
  minFrequency?: number;
  /** Keep at most this many distinct characters as base tokens (most frequent first). Default: all that fit. */
  maxCharacters?: number;
  /** Default `normalizer`. */
  form?: SentencePieceForm;
}

/**
 * Trains a SentencePiece-style BPE tokenizer with byte fallback on `texts` and returns its `tokenizer.json`.
 *
 * Ids: specials 0..n-1, byte tokens `<0x00>`..`<0xFF>` n..n+255, then merged pieces in merge order, then the
 * single characters by falling frequency (the order of Llama 2's vocabulary). With bos `<s>` set, `encode`
 * puts it in front through TemplateProcessing. decode(encode(s)) === s for any well-formed string (with the
 * `metaspace` form, up to a leading space).
 *
 * @throws RangeError when `vocabSize` is not an integer or below specials + 256 + 1, the specials are invalid,
 *   or `unkToken` / `bosToken` is not one of them.
 */
export function trainSentencePieceBpe(texts: Iterable<string>, opts: SentencePieceBpeOptions): TokenizerJson {
  const specials = opts.specialTokens ?? ['<unk>', '<s>', '</s>'];
  const unk = opts.unkToken ?? '<unk>';
  const bos = opts.bosToken === undefined ? '<s>' : opts.bosToken;
  const form = opts.form ?? 'normalizer';
  if (!Number.isInteger(opts.vocabSize)) throw new RangeError(`vocabSize must be an integer, got ${opts.vocabSize}`);
  const fixed = specials.length + 256;
  if (opts.vocabSize <= fixed) {
    throw new RangeError(`vocabSize ${opts.vocabSize} must exceed ${fixed} (${specials.length} special tokens + 256 byte tokens)`);
  }
  const seen = checkSpecialTokens(specials);
  if (!seen.has(unk)) throw new RangeError(`unkToken ${JSON.stringify(unk)} is not one of the special tokens`);
  if (bos !== null && !seen.has(bos)) throw new RangeError(`bosToken ${JSON.stringify(bos)} is not one of the special tokens`);
  const byteTokens = Array.from({ length: 256 }, (_, b) => byteFallbackToken(b));
  for (const s of specials) if (byteTokens.includes(s)) throw new RangeError(`special token ${s} collides with a byte token`);

  // 1. Words of the normalized text, cut as the Llama 2 SentencePiece model's trainer_spec cuts them:
  // before each "▁" (split_by_whitespace), between letters and other scripts (split_by_unicode_script),
  // and around every digit (split_digits).
  const wordCounts = new Map<string, number>();
  const pieces = /▁?[\p{L}\p{M}]+|\p{N}|▁?[^\p{L}\p{M}\p{N}▁]+|▁/gu;
  for (const text of texts) {
    for (const section of cutSpecialTokens(text, specials)) {
      if (!section) continue;
      const normalized = SPIECE_UNDERLINE + section.replaceAll(' ', SPIECE_UNDERLINE);
      for (const w of normalized.match(pieces) ?? []) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }

  // 2. Base characters: the most frequent that fit; the rest go to byte fallback.
  const charCounts = new Map<string, number>();
  for (const [w, c] of wordCounts) for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
  const room = Math.min(opts.vocabSize - fixed, opts.maxCharacters ?? Number.POSITIVE_INFINITY);
  const chars = [...charCounts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, room)
    .map(([ch]) => ch);
  const charIds = new Map(chars.map((ch, i) => [ch, i]));

  // 3. Words as character-id arrays, cut at characters left out (they never take part in a merge).
  const words: Int32Array[] = [];
  const freqs: number[] = [];
  for (const [w, c] of wordCounts) {
    let run: number[] = [];
    const flush = () => {
      if (run.length > 1) {
        words.push(Int32Array.from(run));
        freqs.push(c);
      }
      run = [];
    };
    for (const ch of w) {
      const id = charIds.get(ch);
      if (id === undefined) flush();
      else run.push(id);
    }
    flush();
  }
  wordCounts.clear();

  // 4. Merges.
  const symbols = chars.slice();
  const merges = learnBpeMerges(words, freqs, symbols, {
    maxSymbols: opts.vocabSize - fixed,
    minFrequency: opts.minFrequency ?? 2,
    forbidden: new Set([...specials, ...byteTokens]),
  });

  // 5. tokenizer.json: specials, bytes, merged pieces, then single characters.
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const s of specials) vocab[s] = next++;
  for (const t of byteTokens) vocab[t] = next++;
  for (let i = chars.length; i < symbols.length; i++) vocab[symbols[i]!] = next++;
  for (const ch of chars) vocab[ch] = next++;

  const normalizer =
    form === 'normalizer'
      ? {
          type: 'Sequence',
          normalizers: [
            { type: 'Prepend', prepend: SPIECE_UNDERLINE },
            { type: 'Replace', pattern: { String: ' ' }, content: SPIECE_UNDERLINE },
          ],
        }
      : null;
  const preTokenizer =
    form === 'metaspace' ? { type: 'Metaspace', replacement: SPIECE_UNDERLINE, prepend_scheme: 'first', split: false } : null;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => specialAddedToken(id, content)),
    normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: bos === null ? null : bosTemplateProcessing(bos, specials.indexOf(bos)),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPIECE_UNDERLINE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}
