/**
 * GPT-2 byte-level helpers shared by the BPE trainer and tests.
 *
 * Byte-level BPE works on UTF-8 bytes, each shown as one printable unicode char, so the 256 base symbols
 * cover every string and the vocabulary never needs an unknown token.
 */

/**
 * The GPT-2 pre-tokenizer split: contractions, optional-space + letters, optional-space + digits,
 * optional-space + other symbols, whitespace runs. Identical to the pattern @huggingface/tokenizers' ByteLevel
 * pre-tokenizer uses (and to the Rust `tokenizers` one), so training and encoding see the same words.
 */
export const GPT2_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** A fresh global regex for {@link GPT2_SPLIT_PATTERN} (regexes with `g` keep state, so don't share one). */
export function gpt2SplitRegex(): RegExp {
  return new RegExp(GPT2_SPLIT_PATTERN, 'gu');
}

/** byte (0..255) -> the printable char that stands for it in byte-level vocabularies (GPT-2 `bytes_to_unicode`). */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array<string>(256);
  const isPrintable = new Set(printable);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = isPrintable.has(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  }
  return out;
})();

/** Inverse of {@link BYTE_TO_CHAR}. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const encoder = new TextEncoder();

/** UTF-8 bytes of `text` rendered as byte-level chars (what the ByteLevel pre-tokenizer feeds the BPE model). */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}
