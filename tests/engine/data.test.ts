import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, parseJsonlText, readJsonl, readJsonlFile, type TrainingRecord } from '../../packages/core/src/jsonl.js';
import { IGNORE_INDEX } from '../../packages/core/src/names.js';
import { classificationLabels, collate, encodePrompt, encodeRecord } from '../../packages/engine/src/data/encode.js';
import { renderPlainChat } from '../../packages/engine/src/tokenizer/chat.js';
import { tokenizerConfigFor, trainByteLevelBpe } from '../../packages/lab/src/tokenizer/bpe-trainer.js';
import { tokenizerFromJson, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';

const tmpDirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'edgetune-data-'));
  tmpDirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

let tok: EngineTokenizer;
beforeAll(async () => {
  const text = await readFile(new URL('../fixtures/text/tokenizer-corpus.txt', import.meta.url), 'utf8');
  const tj = trainByteLevelBpe([text], { vocabSize: 500, specialTokens: ['<unk>', '<s>', '</s>', '<pad>'], bosToken: '<s>' });
  tok = tokenizerFromJson(tj, tokenizerConfigFor());
});

function expectDatasetError(fn: () => unknown, code: string, line: number, param?: string | null): DatasetError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DatasetError);
  const de = err as DatasetError;
  expect(de.code).toBe(code);
  expect(de.line).toBe(line);
  if (line > 0) expect(de.message).toMatch(new RegExp(`^(?:[^:]+: )?line ${line}: `));
  if (param !== undefined) expect(de.param).toBe(param);
  return de;
}

describe('JSONL parsing', () => {
  it('accepts both formats, skips blank lines, handles CRLF and a BOM', () => {
    const text =
      '\uFEFF{"prompt": "2+2=", "completion": " 4", "extra": 1}\r\n' +
      '\r\n   \n' +
      '{"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}\n';
    expect(parseJsonlText(text)).toEqual([
      { prompt: '2+2=', completion: ' 4' },
      {
        messages: [
          { role: 'system', content: 'Be terse.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Yo' },
        ],
      },
    ]);
  });

  it('names the line of each kind of bad record', () => {
    const good = '{"prompt": "a", "completion": "b"}';
    const at = (bad: string, line: number) => [...Array(line - 1).fill(good), bad, good].join('\n');
    expectDatasetError(() => parseJsonlText(at('{"prompt": "a", ', 3)), 'invalid_json', 3);
    expectDatasetError(() => parseJsonlText(at('[1, 2]', 2)), 'invalid_record', 2);
    expectDatasetError(() => parseJsonlText(at('"just a string"', 1)), 'invalid_record', 1);
    expectDatasetError(() => parseJsonlText(at('{}', 4)), 'invalid_record', 4);
    expectDatasetError(() => parseJsonlText(at('{"text": "x"}', 2)), 'invalid_record', 2);
    expectDatasetError(() => parseJsonlText(at('{"prompt": "a"}', 5)), 'invalid_record', 5, 'completion');
    expectDatasetError(() => parseJsonlText(at('{"prompt": "a", "completion": 3}', 2)), 'invalid_record', 2, 'completion');
    expectDatasetError(() => parseJsonlText(at('{"prompt": "a", "completion": ""}', 2)), 'invalid_record', 2, 'completion');
    expectDatasetError(() => parseJsonlText(at('{"prompt": "a", "completion": "b", "messages": []}', 2)), 'invalid_record', 2);
    expectDatasetError(() => parseJsonlText(at('{"messages": []}', 6)), 'invalid_record', 6, 'messages');
    expectDatasetError(() => parseJsonlText(at('{"messages": "hi"}', 2)), 'invalid_record', 2, 'messages');
    expectDatasetError(
      () => parseJsonlText(at('{"messages": [{"role": "user", "content": "Hi"}]}', 7)),
      'invalid_record',
      7,
      'messages[0].role',
    );
    expectDatasetError(
      () => parseJsonlText(at('{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}', 2)),
      'invalid_record',
      2,
      'messages[0].role',
    );
    expectDatasetError(
      () => parseJsonlText(at('{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "y"}]}', 2)),
      'invalid_record',
      2,
      'messages[0].content',
    );
    expectDatasetError(
      () => parseJsonlText(at('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}', 3)),
      'invalid_record',
      3,
      'messages[1].content',
    );
    const named = expectDatasetError(() => parseJsonlText('{}', 'train.jsonl'), 'invalid_record', 1);
    expect(named.message).toMatch(/^train\.jsonl: line 1: /);
  });

  it('rejects an empty file', () => {
    expectDatasetError(() => parseJsonlText(''), 'empty_file', 0);
    expectDatasetError(() => parseJsonlText('\n  \n\r\n'), 'empty_file', 0);
  });

  it('streams a file with line numbers and stops at the first bad line', async () => {
    const d = await tempDir();
    const path = join(d, 'data.jsonl');
    await writeFile(path, '{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": "d"}\n');
    const seen: number[] = [];
    for await (const { line } of readJsonl(path)) seen.push(line);
    expect(seen).toEqual([1, 3]);
    expect(await readJsonlFile(path)).toHaveLength(2);

    await writeFile(path, '{"prompt": "a", "completion": "b"}\n{"prompt": 1, "completion": "b"}\n');
    await expect(readJsonlFile(path)).rejects.toMatchObject({ code: 'invalid_record', line: 2, param: 'prompt' });
    await writeFile(path, '\n\n');
    await expect(readJsonlFile(path)).rejects.toMatchObject({ code: 'empty_file' });
  });
});

describe('encodeRecord', () => {
  it('masks the prompt and labels completion + eos', () => {
    const rec = { prompt: 'Call me Ishmael.', completion: ' Some years ago' };
    const ex = encodeRecord(tok, rec, { maxLength: 512 });
    const p = tok.encode(rec.prompt, { addSpecialTokens: false });
    const c = tok.encode(rec.completion, { addSpecialTokens: false });
    expect(ex.inputIds).toEqual([tok.bosId, ...p, ...c, tok.eosId]);
    expect(ex.promptLength).toBe(1 + p.length);
    expect(ex.labels).toEqual([...Array(1 + p.length).fill(IGNORE_INDEX), ...c, tok.eosId]);
    expect(ex.truncated).toBe('none');
    expect(encodePrompt(tok, rec.prompt)).toEqual(ex.inputIds.slice(0, ex.promptLength));
  });

  it('truncates the prompt from the left, keeping bos and the whole completion', () => {
    const rec = { prompt: 'a long prompt with many many words in it, more than fit', completion: ' the answer' };
    const p = tok.encode(rec.prompt, { addSpecialTokens: false });
    const c = tok.encode(rec.completion, { addSpecialTokens: false });
    const maxLength = 1 + c.length + 1 + 3; // bos + completion + eos + 3 prompt tokens
    expect(p.length).toBeGreaterThan(3);
    const ex = encodeRecord(tok, rec, { maxLength });
    expect(ex.inputIds).toHaveLength(maxLength);
    expect(ex.truncated).toBe('prompt');
    expect(ex.inputIds).toEqual([tok.bosId, ...p.slice(-3), ...c, tok.eosId]);
    expect(ex.promptLength).toBe(4);
    expect(ex.labels.slice(4)).toEqual([...c, tok.eosId]);
  });

  it('truncates the completion from the right when it alone does not fit', () => {
    const rec = { prompt: 'Q:', completion: ' a completion that is much longer than the limit allows' };
    const c = tok.encode(rec.completion, { addSpecialTokens: false });
    const ex = encodeRecord(tok, rec, { maxLength: 6 });
    expect(ex.truncated).toBe('completion');
    expect(ex.inputIds).toEqual([tok.bosId, ...c.slice(0, 5)]);
    expect(ex.labels).toEqual([IGNORE_INDEX, ...c.slice(0, 5)]);
    expect(ex.promptLength).toBe(1);
    expect(() => encodeRecord(tok, rec, { maxLength: 1 })).toThrow(RangeError);
  });

  it('uses the chat template for chat records', () => {
    const messages = [
      { role: 'user' as const, content: 'Who?' },
      { role: 'assistant' as const, content: 'Ishmael.' },
    ];
    const ex = encodeRecord(tok, { messages }, { maxLength: 512 });
    const promptText = tok.applyChatTemplate(messages.slice(0, 1), { addGenerationPrompt: true });
    expect(ex.inputIds.slice(0, ex.promptLength)).toEqual(tok.encode(promptText, { addSpecialTokens: false }));
    expect(ex.inputIds[0]).toBe(tok.bosId);
    const answer = ex.inputIds.slice(ex.promptLength);
    expect(answer).toEqual([...tok.encode('Ishmael.', { addSpecialTokens: false }), tok.eosId]);
    expect(ex.labels.slice(ex.promptLength)).toEqual(answer);
    expect(ex.labels.slice(0, ex.promptLength).every((l) => l === IGNORE_INDEX)).toBe(true);
  });

  it('labels the end-of-turn marker a ChatML-style template writes after the answer', () => {
    const chatml = tokenizerFromJson(
      trainByteLevelBpe(['hello world'], { vocabSize: 300, specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] }),
      {
        eos_token: '<|im_end|>',
        pad_token: '<|endoftext|>',
        chat_template:
          "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
      },
    );
    const messages = [
      { role: 'user' as const, content: 'hi' },
      { role: 'assistant' as const, content: 'hello' },
    ];
    const ex = encodeRecord(chatml, { messages }, { maxLength: 64 });
    expect(chatml.addBos).toBe(false);
    expect(chatml.decode(ex.inputIds.slice(0, ex.promptLength))).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    // the answer ends with the template's own <|im_end|> (= eos here), not with a second eos
    expect(chatml.decode(ex.inputIds.slice(ex.promptLength))).toBe('hello<|im_end|>');
    expect(ex.labels[ex.labels.length - 1]).toBe(chatml.eosId);
  });

  it('falls back to the plain chat format without a template', () => {
    const plainTok = tokenizerFromJson(
      trainByteLevelBpe(['hello world'], { vocabSize: 300, specialTokens: ['<unk>', '<s>', '</s>', '<pad>'], bosToken: '<s>' }),
      tokenizerConfigFor({ chatTemplate: null }),
    );
    const messages = [
      { role: 'system' as const, content: 'S' },
      { role: 'user' as const, content: 'U' },
      { role: 'assistant' as const, content: 'A' },
    ];
    const ex = encodeRecord(plainTok, { messages }, { maxLength: 128 });
    const promptText = renderPlainChat(messages.slice(0, 2), { addGenerationPrompt: true });
    expect(promptText).toBe('<|system|>\nS\n<|user|>\nU\n<|assistant|>\n');
    expect(ex.inputIds).toEqual([
      1,
      ...plainTok.encode(promptText, { addSpecialTokens: false }),
      ...plainTok.encode('A', { addSpecialTokens: false }),
      2,
    ]);
  });
});

describe('collate', () => {
  it('right-pads ids, labels and mask to the longest example', () => {
    const a = { inputIds: [1, 10, 11, 2], labels: [-100, -100, 11, 2], promptLength: 2, truncated: 'none' as const };
    const b = { inputIds: [1, 12], labels: [-100, 2], promptLength: 1, truncated: 'none' as const };
    const batch = collate([a, b], 3);
    expect([batch.batch, batch.seq]).toEqual([2, 4]);
    expect([...batch.inputIds]).toEqual([1, 10, 11, 2, 1, 12, 3, 3]);
    expect([...batch.labels]).toEqual([-100, -100, 11, 2, -100, 2, -100, -100]);
    expect([...batch.attentionMask]).toEqual([1, 1, 1, 1, 1, 1, 0, 0]);
    expect(collate([b], 0, { padToMultipleOf: 8 }).seq).toBe(8);
    expect(() => collate([], 0)).toThrow(RangeError);
  });
});

describe('classificationLabels', () => {
  it('lists the distinct answers, or null for open-ended data', () => {
    const recs: TrainingRecord[] = [
      { prompt: 'x', completion: ' spam' },
      { prompt: 'y', completion: ' ham' },
      {
        messages: [
          { role: 'user', content: 'z' },
          { role: 'assistant', content: ' spam' },
        ],
      },
    ];
    expect(classificationLabels(recs)).toEqual([' ham', ' spam']);
    const many = Array.from({ length: 40 }, (_, i) => ({ prompt: 'p', completion: `answer ${i}` }));
    expect(classificationLabels(many)).toBeNull();
    expect(classificationLabels(many, { maxLabels: 40 })).toHaveLength(40);
  });
});
