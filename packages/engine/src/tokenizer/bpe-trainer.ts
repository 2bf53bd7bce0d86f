/**
 * Our own byte-level BPE trainer (GPT-2, Llama 3, Qwen2 and SmolLM2 styles), producing a Hugging Face
 * `tokenizer.json` object, and the merge loop it shares with the SentencePiece-style trainer.
 *
 * Algorithm: split every text with the family's pre-tokenizer, count distinct words, start each word as its
 * UTF-8 bytes (256 base symbols), then repeatedly merge the most frequent adjacent pair ({@link learnBpeMerges}).
 */
import { BYTE_TO_CHAR, gpt2SplitRegex } from './byte-level.js';
import { DEFAULT_CHAT_TEMPLATE } from './chat.js';

/** Options of {@link trainByteLevelBpe}. */
export interface BpeTrainOptions {
  /**
   * Target vocabulary size in tokens, special tokens and the 256 byte symbols included
   * (so at least `specialTokens.length + 256`). Training stops early when no pair reaches `minFrequency`,
   * so the result can be smaller.
   */
  vocabSize: number;
  /** Special tokens, given ids 0..n-1 in this order, e.g. `['<unk>', '<s>', '</s>', '<pad>']`. */
  specialTokens: string[];
  /** Smallest count (in word occurrences) a pair needs to be merged. Default 2. */
  minFrequency?: number;
  /**
   * Special token that `encode(text)` (with special tokens on) puts in front, LLaMA style, through a
   * TemplateProcessing post-processor. Must be one of `specialTokens`. Default: none (no post-processor effect).
   */
  bosToken?: string;
  /** Normalizer / pre-tokenizer / decoder family (see {@link ByteLevelFamily}). Default `gpt2`. */
  family?: ByteLevelFamily;
}

/** One `added_tokens` entry of tokenizer.json. */
export interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A Hugging Face `tokenizer.json` object (only the fields we write are typed). */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedToken[];
  normalizer: Record<string, unknown> | null;
  pre_tokenizer: Record<string, unknown> | null;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown>;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: string | null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

/** Max-heap of (count, pair key); ties go to the smaller key so training is deterministic. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private better(i: number, j: number): boolean {
    const ci = this.counts[i]!,
      cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top; returns [count, key] or null when empty. */
  pop(): [number, number] | null {
    const n = this.counts.length;
    if (n === 0) return null;
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastC = this.counts.pop()!,
      lastK = this.keys.pop()!;
    if (n > 1) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      const m = n - 1;
      for (;;) {
        const l = 2 * i + 1,
          r = l + 1;
        let b = i;
        if (l < m && this.better(l, b)) b = l;
        if (r < m && this.better(r, b)) b = r;
        if (b === i) break;
        this.swap(i, b);
        i = b;
      }
    }
    return top;
  }
}

// Pair key = left * 2^21 + right: exact in a double for symbol ids below 2^21 (2M).
const KEY_MUL = 1 << 21;

/** Options of {@link learnBpeMerges}. */
export interface MergeOptions {
  /** Stop when the symbol table reaches this many entries (base symbols included). */
  maxSymbols: number;
  /** Smallest count (in word occurrences) a pair needs to be merged. */
  minFrequency: number;
  /** Merged strings that must never become a token (special tokens, byte-fallback names). */
  forbidden?: ReadonlySet<string>;
}

/**
 * The BPE merge loop shared by the byte-level and SentencePiece-style trainers (Sennrich et al. 2016, "Neural
 * Machine Translation of Rare Words with Subword Units", section 3.1): repeatedly merges the most frequent
 * adjacent pair of symbols over `words` (symbol-id arrays, each seen `freqs[i]` times). Pair counts are kept up
 * to date incrementally (only words containing the merged pair are touched) and the best pair comes from a
 * max-heap with lazy deletion, so a merge costs time proportional to the words it changes, not to the corpus.
 * Ties go to the smaller (left, right) id pair, so the result is deterministic.
 *
 * `symbols` (id -> string) is extended in place with each new merged symbol; `words` are rewritten in place.
 * @returns merges in rank order, in the `"left right"` string form of HF `tokenizer.json`.
 * @throws RangeError when `maxSymbols` is 2^21 or more (pair keys would overflow).
 */
export function learnBpeMerges(words: Int32Array[], freqs: readonly number[], symbols: string[], opts: MergeOptions): string[] {
  if (opts.maxSymbols >= KEY_MUL) throw new RangeError(`vocabulary of ${opts.maxSymbols} symbols is above ${KEY_MUL - 1}`);
  const minFrequency = Math.max(1, opts.minFrequency);
  const forbidden = opts.forbidden ?? new Set<string>();
  const symbolIds = new Map<string, number>(symbols.map((s, i) => [s, i]));

  // Initial pair statistics.
  const pairCounts = new Map<number, number>();
  const pairWhere = new Map<number, Set<number>>();
  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi]!;
    const f = freqs[wi]!;
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i]! * KEY_MUL + w[i + 1]!;
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + f);
      let set = pairWhere.get(key);
      if (!set) pairWhere.set(key, (set = new Set()));
      set.add(wi);
    }
  }
  const heap = new PairHeap();
  for (const [key, count] of pairCounts) heap.push(count, key);

  const merges: string[] = [];
  const scratch: number[] = [];
  while (symbols.length < opts.maxSymbols) {
    const top = heap.pop();
    if (!top) break;
    const [count, key] = top;
    if (pairCounts.get(key) !== count) continue; // stale heap entry
    if (count < minFrequency) break;
    const a = Math.floor(key / KEY_MUL);
    const b = key - a * KEY_MUL;
    const merged = symbols[a]! + symbols[b]!;
    if (forbidden.has(merged)) {
      // Would shadow a special token: never merge this pair.
      pairCounts.delete(key);
      pairWhere.delete(key);
      continue;
    }
    // The same string can come from two merge paths ("a"+"bc", "ab"+"c"): reuse its id, as HF's trainer does.
    let newId = symbolIds.get(merged);
    if (newId === undefined) {
      newId = symbols.length;
      symbols.push(merged);
      symbolIds.set(merged, newId);
    }
    merges.push(`${symbols[a]} ${symbols[b]}`);

    const affected = pairWhere.get(key);
    pairWhere.delete(key);
    if (!affected) continue;
    const delta = new Map<number, number>();
    for (const wi of affected) {
      const w = words[wi]!;
      scratch.length = 0;
      let found = false;
      for (let i = 0; i < w.length; ) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          scratch.push(newId);
          i += 2;
          found = true;
        } else {
          scratch.push(w[i]!);
          i++;
        }
      }
      if (!found) continue;
      const f = freqs[wi]!;
      for (let i = 0; i + 1 < w.length; i++) {
        const k = w[i]! * KEY_MUL + w[i + 1]!;
        delta.set(k, (delta.get(k) ?? 0) - f);
      }
      for (let i = 0; i + 1 < scratch.length; i++) {
        const l = scratch[i]!,
          r = scratch[i + 1]!;
        const k = l * KEY_MUL + r;
        delta.set(k, (delta.get(k) ?? 0) + f);
        // Pairs without the new symbol were already adjacent before, so their word sets are complete.
        if (l === newId || r === newId) {
          let set = pairWhere.get(k);
          if (!set) pairWhere.set(k, (set = new Set()));
          set.add(wi);
        }
      }
      words[wi] = Int32Array.from(scratch);
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCounts.get(k) ?? 0) + d;
      if (c <= 0) {
        pairCounts.delete(k);
      } else {
        pairCounts.set(k, c);
        heap.push(c, k);
      }
    }
  }
  return merges;
}

/** Escapes `s` for use inside a RegExp. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Splits `text` around occurrences of the special tokens (which become single ids at encode time, so they must
 * not feed pair counts). Returns the pieces between them.
 */
export function cutSpecialTokens(text: string, specials: readonly string[]): string[] {
  if (specials.length === 0) return [text];
  // Longest first, so a special that prefixes another does not cut it.
  const alternatives = [...specials].sort((x, y) => y.length - x.length).map(escapeRegExp);
  return text.split(new RegExp(alternatives.join('|'), 'g'));
}

/** Checks the special-token list shared by both trainers. @throws RangeError for empty or duplicated tokens. */
export function checkSpecialTokens(specials: readonly string[]): Set<string> {
  const seen = new Set<string>();
  for (const s of specials) {
    if (typeof s !== 'string' || s.length === 0) throw new RangeError('special tokens must be non-empty strings');
    if (seen.has(s)) throw new RangeError(`duplicate special token ${JSON.stringify(s)}`);
    seen.add(s);
  }
  return seen;
}

/** An `added_tokens` entry of tokenizer.json for a special token (never normalized, matched as a whole). */
export function specialAddedToken(id: number, content: string, special = true): AddedToken {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/**
 * A TemplateProcessing post-processor that puts `bos` in front of every sequence, as in the HF conversions of
 * LLaMA tokenizers (`tokenizers` `TemplateProcessing`, `convert_slow_tokenizer.py` LlamaConverter).
 */
export function bosTemplateProcessing(bos: string, bosId: number): Record<string, unknown> {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [
      { SpecialToken: { id: bos, type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: bos, type_id: 1 } },
      { Sequence: { id: 'B', type_id: 1 } },
    ],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

/**
 * The pre-tokenization of a byte-level BPE family, as its `tokenizer.json` writes it:
 * - `gpt2`: ByteLevel with the GPT-2 regex (GPT-2, our default);
 * - `llama3`: Split on the Llama 3 regex (digits in runs of up to 3) then ByteLevel without regex
 *   (meta-llama/Llama-3.2-1B `tokenizer.json`);
 * - `qwen2`: NFC normalizer, Split on the Qwen2 regex (single digits) then ByteLevel without regex
 *   (Qwen/Qwen2.5-0.5B `tokenizer.json`);
 * - `smollm2`: Digits (individual) then ByteLevel with the GPT-2 regex (HuggingFaceTB/SmolLM2-135M `tokenizer.json`).
 */
export type ByteLevelFamily = 'gpt2' | 'llama3' | 'qwen2' | 'smollm2';

/** The Llama 3 Split regex as written in its tokenizer.json (Rust `fancy-regex` syntax, `(?i:` inline flag). */
export const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** The Qwen2 Split regex as written in its tokenizer.json: the Llama 3 one with single digits. */
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** JavaScript has no `(?i:...)` group before V8 12.5: spell the contractions' case variants out. */
function jsPattern(pattern: string): string {
  return pattern.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])");
}

/** The words a family's pre-tokenizer cuts `text` into (what the BPE model sees, before byte mapping). */
export function byteLevelWords(text: string, family: ByteLevelFamily): string[] {
  const out: string[] = [];
  const split = (s: string, re: RegExp) => {
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(s)) !== null) out.push(m[0]);
  };
  switch (family) {
    case 'gpt2':
      split(text, gpt2SplitRegex());
      break;
    case 'llama3':
      split(text, new RegExp(jsPattern(LLAMA3_SPLIT_PATTERN), 'gu'));
      break;
    case 'qwen2':
      split(text.normalize('NFC'), new RegExp(jsPattern(QWEN2_SPLIT_PATTERN), 'gu'));
      break;
    case 'smollm2': {
      const re = gpt2SplitRegex();
      for (const piece of text.split(/(\p{N})/u)) if (piece) split(piece, re);
      break;
    }
  }
  return out;
}

/** normalizer, pre_tokenizer, decoder and the post-processor without bos, per family (see {@link ByteLevelFamily}). */
function byteLevelPipeline(family: ByteLevelFamily): {
  normalizer: Record<string, unknown> | null;
  pre_tokenizer: Record<string, unknown>;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown>;
} {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const split = (pattern: string) => ({ type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false });
  switch (family) {
    case 'gpt2':
      return { normalizer: null, pre_tokenizer: byteLevel, post_processor: { ...byteLevel, trim_offsets: false }, decoder: byteLevel };
    case 'llama3':
      return {
        normalizer: null,
        pre_tokenizer: { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT_PATTERN), { ...byteLevel, use_regex: false }] },
        post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      };
    case 'qwen2': {
      const plain = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
      return {
        normalizer: { type: 'NFC' },
        pre_tokenizer: { type: 'Sequence', pretokenizers: [split(QWEN2_SPLIT_PATTERN), plain] },
        post_processor: plain,
        decoder: plain,
      };
    }
    case 'smollm2':
      return {
        normalizer: null,
        pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel] },
        post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      };
  }
}

/**
 * Trains a byte-level BPE tokenizer on `texts`.
 *
 * Returns a complete `tokenizer.json` object (model BPE with vocab + merges in the "a b" string form, the
 * family's normalizer / pre-tokenizer / decoder (see {@link ByteLevelFamily}; default `gpt2`), the special
 * tokens as `added_tokens`, and a TemplateProcessing post-processor when `bosToken` is set, wrapped in a Sequence
 * after ByteLevel for `llama3` as in Llama 3's file) that `@huggingface/tokenizers` and Python `tokenizers` load.
 * Ids: specials 0..n-1, then the 256 byte symbols in byte order, then one id per merge.
 * decode(encode(s)) === s for any well-formed string (NFC-normalized first for `qwen2`).
 *
 * Special-token strings found in the training texts are cut out before counting (at encode time they become
 * their single special id anyway).
 *
 * @throws RangeError when `vocabSize` is too small or not an integer, or the special tokens are empty/duplicated
 *   or collide with a byte symbol.
 */
export function trainByteLevelBpe(texts: Iterable<string>, opts: BpeTrainOptions): TokenizerJson {
  const specials = opts.specialTokens;
  const family = opts.family ?? 'gpt2';
  if (!Number.isInteger(opts.vocabSize)) throw new RangeError(`vocabSize must be an integer, got ${opts.vocabSize}`);
  const base = specials.length + 256;
  if (opts.vocabSize < base) {
    throw new RangeError(`vocabSize ${opts.vocabSize} is below ${base} (${specials.length} special tokens + 256 bytes)`);
  }
  if (opts.vocabSize >= KEY_MUL) throw new RangeError(`vocabSize ${opts.vocabSize} is above ${KEY_MUL - 1}`);
  const seenSpecial = checkSpecialTokens(specials);
  for (const s of specials) {
    if (BYTE_TO_CHAR.includes(s)) throw new RangeError(`special token ${JSON.stringify(s)} collides with a byte symbol`);
  }
  if (opts.bosToken !== undefined && !seenSpecial.has(opts.bosToken)) {
    throw new RangeError(`bosToken ${JSON.stringify(opts.bosToken)} is not one of the special tokens`);
  }

  // 1. Word counts over the pre-tokenized corpus.
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const section of cutSpecialTokens(text, specials)) {
      for (const w of byteLevelWords(section, family)) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }

  // 2. Words as symbol-id arrays; symbols 0..255 are the bytes.
  const encoder = new TextEncoder();
  const words: Int32Array[] = [];
  const freqs: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Int32Array.from(encoder.encode(w)));
    freqs.push(c);
  }
  wordCounts.clear();

  // 3. Merges.
  const symbols: string[] = BYTE_TO_CHAR.slice();
  const merges = learnBpeMerges(words, freqs, symbols, {
    maxSymbols: opts.vocabSize - specials.length,
    minFrequency: opts.minFrequency ?? 2,
    forbidden: seenSpecial,
  });

  // 4. Assemble tokenizer.json.
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  for (let i = 0; i < symbols.length; i++) vocab[symbols[i]!] = specials.length + i;

  const pipeline = byteLevelPipeline(family);
  let postProcessor = pipeline.post_processor;
  if (opts.bosToken !== undefined) {
    const bos = bosTemplateProcessing(opts.bosToken, specials.indexOf(opts.bosToken));
    postProcessor = family === 'gpt2' ? bos : { type: 'Sequence', processors: [pipeline.post_processor, bos] };
  }

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => specialAddedToken(id, content)),
    normalizer: pipeline.normalizer,
    pre_tokenizer: pipeline.pre_tokenizer,
    post_processor: postProcessor,
    decoder: pipeline.decoder,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      // Llama 3 looks a whole pre-token up in the vocabulary before merging (tokenizers >= 0.19).
      ignore_merges: family === 'llama3',
      vocab,
      merges,
    },
  };
}

/** Options of {@link tokenizerConfigFor}. Token fields name special tokens of the tokenizer (or null for none). */
export interface TokenizerConfigOptions {
  bosToken?: string | null;
  eosToken?: string | null;
  padToken?: string | null;
  unkToken?: string | null;
  /** Longest sequence the model takes, in tokens. Default 2048. */
  modelMaxLength?: number;
  /** Jinja chat template; default {@link DEFAULT_CHAT_TEMPLATE}. Pass null for none. */
  chatTemplate?: string | null;
  /** Whether `encode` puts bos in front (must match the tokenizer.json post-processor). Default: bosToken != null. */
  addBosToken?: boolean;
}

/**
 * A `tokenizer_config.json` object for a tokenizer made by {@link trainByteLevelBpe}.
 * Defaults follow the LLaMA convention: `<s>`, `</s>`, `<pad>`, `<unk>`, bos added by `encode`, no eos added,
 * no `clean_up_tokenization_spaces` (so decode(encode(s)) === s), and {@link DEFAULT_CHAT_TEMPLATE}.
 */
export function tokenizerConfigFor(opts: TokenizerConfigOptions = {}): Record<string, unknown> {
  const bos = opts.bosToken === undefined ? '<s>' : opts.bosToken;
  const eos = opts.eosToken === undefined ? '</s>' : opts.eosToken;
  const pad = opts.padToken === undefined ? '<pad>' : opts.padToken;
  const unk = opts.unkToken === undefined ? '<unk>' : opts.unkToken;
  const chatTemplate = opts.chatTemplate === undefined ? DEFAULT_CHAT_TEMPLATE : opts.chatTemplate;
  const cfg: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: opts.addBosToken ?? bos !== null,
    add_eos_token: false,
    bos_token: bos,
    eos_token: eos,
    pad_token: pad,
    unk_token: unk,
    model_max_length: opts.modelMaxLength ?? 2048,
    clean_up_tokenization_spaces: false,
  };
  if (chatTemplate !== null) cfg.chat_template = chatTemplate;
  return cfg;
}
