// Real tokenizer formats built by the project's trainers and read back by @huggingface/tokenizers: byte-level BPE
// as Llama 3 / Qwen2 / SmolLM2 write it, SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama,
// Mistral), and the families' chat templates rendered through loadTokenizer.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_TEMPLATES,
  LLAMA3_SPLIT_PATTERN,
  QWEN2_SPLIT_PATTERN,
  TokenizerError,
  byteLevelWords,
  loadTokenizer,
  toByteLevel,
  tokenizerFromJson,
  trainByteLevelBpe,
  trainSentencePieceBpe,
  type ByteLevelFamily,
  type ChatMessage,
  type ChatTemplateFamily,
  type TokenizerJson,
} from '../../packages/engine/src/tokenizer/index.js';

let corpus: string;
let dir: string;

beforeAll(async () => {
  corpus = await readFile(new URL('../fixtures/text/tokenizer-corpus.txt', import.meta.url), 'utf8');
  dir = await mkdtemp(join(tmpdir(), 'edgetune-tokfmt-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Reference SentencePiece-BPE encoder: merges by rank over the whole "▁"-normalized text, then byte fallback. */
function naiveSpEncode(tj: TokenizerJson, text: string): number[] {
  const ranks = new Map(tj.model.merges.map((m, i) => [m, i]));
  const syms = Array.from(`▁${text.replaceAll(' ', '▁')}`);
  for (;;) {
    let best = -1;
    let bestRank = Number.POSITIVE_INFINITY;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = ranks.get(`${syms[i]} ${syms[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    syms.splice(best, 2, syms[best]! + syms[best + 1]!);
  }
  const ids: number[] = [];
  for (const s of syms) {
    const id = tj.model.vocab[s];
    if (id !== undefined) ids.push(id);
    else for (const b of new TextEncoder().encode(s)) ids.push(tj.model.vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]!);
  }
  return ids;
}

describe('SentencePiece-style BPE with byte fallback', () => {
  it('writes the HF Llama tokenizer.json structure with <unk>=0 <s>=1 </s>=2 and byte tokens 3..258', () => {
    const tj = trainSentencePieceBpe([corpus], { vocabSize: 600 });
    expect(tj.normalizer).toEqual({
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    });
    expect(tj.pre_tokenizer).toBeNull();
    expect(tj.decoder).toEqual({
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    });
    expect(tj.model).toMatchObject({ type: 'BPE', byte_fallback: true, fuse_unk: true, unk_token: '<unk>' });
    const v = tj.model.vocab;
    expect([v['<unk>'], v['<s>'], v['</s>'], v['<0x00>'], v['<0x0A>'], v['<0xFF>']]).toEqual([0, 1, 2, 3, 13, 258]);
    expect(Object.keys(v).length).toBe(600);
    expect(new Set(Object.values(v)).size).toBe(600);
    expect(Math.max(...Object.values(v))).toBe(599);
    // Merged pieces come before single characters, as in Llama 2's vocabulary.
    expect(tj.model.merges[0]).toBe('▁ t');
    expect(v['▁t']).toBe(259);
    expect(tj.added_tokens.map((t) => [t.id, t.content, t.special])).toEqual([
      [0, '<unk>', true],
      [1, '<s>', true],
      [2, '</s>', true],
    ]);
  });

  it('encodes as a reference merge-by-rank encoder does, round-trips, and falls back to bytes', () => {
    const tj = trainSentencePieceBpe([corpus], { vocabSize: 800 });
    const tok = tokenizerFromJson(tj, { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true });
    const samples = [
      'The quick brown fox jumps over the lazy dog.',
      'naïve café 2024: 日本語 🙂 and  two spaces',
      ' leading space\tand\ttabs\nand lines\n',
      corpus.slice(0, 2000),
    ];
    for (const s of samples) {
      const ids = tok.encode(s, { addSpecialTokens: false });
      expect(ids).toEqual(naiveSpEncode(tj, s));
      expect(tok.decode(ids)).toBe(s);
      expect(tok.encode(s)).toEqual([1, ...ids]);
      expect(tok.decode(tok.encode(s), { skipSpecialTokens: true })).toBe(s);
    }
    // Characters the corpus never had go through their UTF-8 bytes; digits stay single (split_digits).
    const emoji = tok.encode('🙂 2024', { addSpecialTokens: false }).map((i) => tok.idToToken(i));
    expect(emoji).toEqual(['▁', '<0xF0>', '<0x9F>', '<0x99>', '<0x82>', '▁', '2', '0', '2', '4']);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.unkId).toBe(0);
    expect(tok.addBos).toBe(true);
  });

  it('shrinks token counts as merges grow, and leaves rare characters to byte fallback', () => {
    const text = corpus.slice(0, 20_000);
    const count = (vocabSize: number) => tokenizerFromJson(trainSentencePieceBpe([corpus], { vocabSize }), {}).encode(text).length;
    const chars = new Set(Array.from(`▁${corpus.replaceAll(' ', '▁')}`)).size;
    const none = count(259 + chars + 3);
    const small = count(259 + chars + 300);
    const large = count(259 + chars + 2000);
    expect(small).toBeLessThan(none * 0.75);
    expect(large).toBeLessThan(small);
    const capped = trainSentencePieceBpe([corpus], { vocabSize: 800, maxCharacters: 20 });
    const t = tokenizerFromJson(capped, {});
    const ids = t.encode('zebra quiz', { addSpecialTokens: false });
    expect(ids.some((i) => t.idToToken(i)!.startsWith('<0x'))).toBe(true);
    expect(t.decode(ids)).toBe('zebra quiz');
  });

  it('builds the Metaspace form with the same ids', () => {
    const a = trainSentencePieceBpe([corpus], { vocabSize: 700 });
    const b = trainSentencePieceBpe([corpus], { vocabSize: 700, form: 'metaspace' });
    expect(b.normalizer).toBeNull();
    expect(b.pre_tokenizer).toEqual({ type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false });
    const ta = tokenizerFromJson(a, {});
    const tb = tokenizerFromJson(b, {});
    const s = 'Hello  world, déjà vu 🙂';
    expect(tb.encode(s)).toEqual(ta.encode(s));
    expect(tb.decode(tb.encode(s, { addSpecialTokens: false }))).toBe(s);
  });

  it('validates its options', () => {
    expect(() => trainSentencePieceBpe([corpus], { vocabSize: 259 })).toThrow(/must exceed 259/);
    expect(() => trainSentencePieceBpe([corpus], { vocabSize: 300, unkToken: '<u>' })).toThrow(/unkToken/);
    expect(() => trainSentencePieceBpe([corpus], { vocabSize: 300, specialTokens: ['<unk>', '<0x41>'], bosToken: null })).toThrow(
      /byte token/,
    );
  });
});

describe('byte-level BPE families', () => {
  const sample = "I'M DON'T 1234567 Hello  world\n\n x";
  // Enough repetitions that every pre-token is merged into one token: the tokens then show the library's split.
  const train = (family: ByteLevelFamily) =>
    trainByteLevelBpe([`${sample} `.repeat(20)], {
      vocabSize: 2000,
      specialTokens: ['<|begin_of_text|>'],
      family,
      bosToken: '<|begin_of_text|>',
    });
  const expected: Record<ByteLevelFamily, string[]> = {
    gpt2: ['I', "'", 'M', ' DON', "'", 'T', ' 1234567', ' Hello', ' ', ' world', '\n\n', ' x'],
    llama3: ['I', "'M", ' DON', "'T", ' ', '123', '456', '7', ' Hello', ' ', ' world', '\n\n', ' x'],
    qwen2: ['I', "'M", ' DON', "'T", ' ', '1', '2', '3', '4', '5', '6', '7', ' Hello', ' ', ' world', '\n\n', ' x'],
    smollm2: ['I', "'", 'M', ' DON', "'", 'T', ' ', '1', '2', '3', '4', '5', '6', '7', ' Hello', ' ', ' world', '\n\n', ' x'],
  };

  for (const family of ['gpt2', 'llama3', 'qwen2', 'smollm2'] as const) {
    it(`${family}: the library splits text as the trainer did`, () => {
      expect(byteLevelWords(sample, family)).toEqual(expected[family]);
      const tok = tokenizerFromJson(train(family), {});
      const ids = tok.encode(sample, { addSpecialTokens: false });
      expect(ids.map((i) => tok.idToToken(i))).toEqual(expected[family].map(toByteLevel));
      expect(tok.decode(ids)).toBe(sample);
      expect(tok.encode('a')).toEqual([0, tok.tokenToId('a')]);
    });
  }

  it('writes each family pre-tokenizer, decoder and post-processor as its tokenizer.json does', () => {
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
    const l3 = train('llama3');
    expect(l3.pre_tokenizer).toEqual({
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_SPLIT_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel],
    });
    expect(l3.decoder).toEqual({ type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true });
    expect((l3.post_processor as { type: string; processors: Array<{ type: string }> }).processors.map((p) => p.type)).toEqual([
      'ByteLevel',
      'TemplateProcessing',
    ]);
    expect(l3.model.ignore_merges).toBe(true);
    const qw = trainByteLevelBpe([corpus], { vocabSize: 400, specialTokens: [], family: 'qwen2' });
    expect(qw.normalizer).toEqual({ type: 'NFC' });
    expect((qw.pre_tokenizer as { pretokenizers: unknown[] }).pretokenizers[0]).toEqual({
      type: 'Split',
      pattern: { Regex: QWEN2_SPLIT_PATTERN },
      behavior: 'Isolated',
      invert: false,
    });
    expect((qw.pre_tokenizer as { pretokenizers: unknown[] }).pretokenizers[1]).toEqual({
      type: 'ByteLevel',
      add_prefix_space: false,
      trim_offsets: false,
      use_regex: false,
    });
    expect(qw.post_processor).toEqual({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false });
    const sm = trainByteLevelBpe([corpus], { vocabSize: 400, specialTokens: [], family: 'smollm2' });
    expect(sm.pre_tokenizer).toEqual({
      type: 'Sequence',
      pretokenizers: [
        { type: 'Digits', individual_digits: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    });
  });

  it('round-trips arbitrary text in every family (NFC first for qwen2)', () => {
    const s = 'Ünïcödé 日本語 🙂🙂 tabs\tand\r\nCRLF  and   spaces 3.14159 e\u0301';
    for (const family of ['gpt2', 'llama3', 'qwen2', 'smollm2'] as const) {
      const tok = tokenizerFromJson(trainByteLevelBpe([corpus], { vocabSize: 600, specialTokens: [], family }), {});
      const want = family === 'qwen2' ? s.normalize('NFC') : s;
      expect(tok.decode(tok.encode(s))).toBe(want);
    }
  });
});

describe('family chat templates through loadTokenizer', () => {
  const specials = [
    '<unk>',
    '<s>',
    '</s>',
    '<|begin_of_text|>',
    '<|start_header_id|>',
    '<|end_header_id|>',
    '<|eot_id|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|endoftext|>',
  ];
  const folder = async (family: ChatTemplateFamily, bos: string | null, eos: string) => {
    const d = join(dir, family);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'tokenizer.json'), JSON.stringify(trainByteLevelBpe([corpus], { vocabSize: 500, specialTokens: specials })));
    await writeFile(
      join(d, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: bos, eos_token: eos, chat_template: CHAT_TEMPLATES[family] }),
    );
    return loadTokenizer(d);
  };
  const sysUser: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ];

  it('Llama 3.2: system header with dates, <|eot_id|> turns, assistant header as generation prompt', async () => {
    const tok = await folder('llama-3.2', '<|begin_of_text|>', '<|eot_id|>');
    expect(tok.applyChatTemplate(sysUser, { addGenerationPrompt: true })).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' +
        'Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const text = tok.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
    expect(text.endsWith('<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>')).toBe(true);
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect(ids[0]).toBe(3);
    expect(ids.filter((i) => i === 6)).toHaveLength(2); // one <|eot_id|> id per turn
  });

  it('Llama 3: no system preamble', async () => {
    const tok = await folder('llama-3', '<|begin_of_text|>', '<|eot_id|>');
    expect(tok.applyChatTemplate([{ role: 'user', content: ' Hi ' }], { addGenerationPrompt: true })).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('ChatML: Qwen2.5 and SmolLM2 with their default system prompts', async () => {
    const qwen = await folder('qwen2.5', null, '<|im_end|>');
    expect(qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(qwen.applyChatTemplate(sysUser)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
    const smol = await folder('smollm2', '<|im_start|>', '<|im_end|>');
    expect(smol.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    const ids = smol.encode(smol.applyChatTemplate(sysUser), { addSpecialTokens: false });
    expect(ids.filter((i) => i === 7)).toHaveLength(2); // <|im_start|>
    expect(ids.filter((i) => i === 8)).toHaveLength(2); // <|im_end|>
  });

  it('Zephyr style of TinyLlama chat: <|role|> lines closed by eos', async () => {
    const tok = await folder('tinyllama', '<s>', '</s>');
    expect(tok.applyChatTemplate(sysUser, { addGenerationPrompt: true })).toBe(
      '<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n',
    );
    expect(tok.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('<|user|>\nHi</s>\n');
  });

  it('[INST] of Llama 2 and Mistral, which reject turns out of order', async () => {
    const llama2 = await folder('llama-2', '<s>', '</s>');
    const turns: ChatMessage[] = [...sysUser, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Why?' }];
    expect(llama2.applyChatTemplate(turns)).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Why? [/INST]');
    const mistral = await folder('mistral', '<s>', '</s>');
    expect(mistral.applyChatTemplate(turns.slice(1))).toBe('<s>[INST] Hi [/INST]Hello.</s>[INST] Why? [/INST]');
    let err: unknown;
    try {
      mistral.applyChatTemplate([{ role: 'assistant', content: 'first' }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as TokenizerError).code).toBe('invalid_chat_template');
  });
});
