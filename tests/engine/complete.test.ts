// Text completion over generate: decoded text, stop sequences, and streamed deltas that never take back text.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { loadTokenizer, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { encodeChatPrompt, encodePrompt } from '../../packages/engine/src/data/encode.js';
import { generate } from '../../packages/engine/src/infer/generate.js';
import { complete } from '../../packages/engine/src/infer/complete.js';
import { loadWithAdapter, type LoadedAdapter } from '../../packages/engine/src/infer/load.js';
import { createTinyModel } from '../helpers/tiny-model.js';

let dir: string;
let m: LoadedAdapter;
let tok: EngineTokenizer;
let ids: number[];

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-complete-'));
  createTinyModel(join(dir, 'model'), { layers: 2 });
  m = loadWithAdapter(join(dir, 'model'));
  tok = await loadTokenizer(join(dir, 'model'));
  ids = encodePrompt(tok, 'The whale and the ship');
});

afterAll(() => {
  m?.model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('complete', () => {
  it('decodes what generate makes, streams it in pieces, and says why it ended', () => {
    const tokens = generate(m.model, m.paths, ids, { maxNewTokens: 24, rule: 'max', stopIds: tok.eosId !== null ? [tok.eosId] : [] });
    const deltas: string[] = [];
    const r = complete(m.model, m.paths, tok, ids, { maxNewTokens: 24, rule: 'max', onText: (d) => deltas.push(d) });
    expect(r.text).toBe(tok.decode(tokens, { skipSpecialTokens: true }));
    expect(r.completionTokens).toBe(tokens.length);
    expect(r.finishReason).toBe(tokens.length === 24 ? 'length' : 'stop');
    expect(deltas.join('')).toBe(r.text);
    expect(deltas.length).toBeGreaterThan(1);
  });

  it('ends before a stop sequence and never streams past it', () => {
    const full = complete(m.model, m.paths, tok, ids, { maxNewTokens: 24, rule: 'max' }).text;
    expect(full.length).toBeGreaterThan(8);
    const stop = full.slice(5, 8);
    const deltas: string[] = [];
    const r = complete(m.model, m.paths, tok, ids, {
      maxNewTokens: 24,
      rule: 'max',
      stop: ['\u0000never', stop],
      onText: (d) => deltas.push(d),
    });
    expect(r.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(deltas.join('')).toBe(r.text);
    expect(r.finishReason).toBe('stop');
    expect(r.completionTokens).toBeLessThan(24);
  });

  it('generate stops where onToken returns false', () => {
    let n = 0;
    const out = generate(m.model, m.paths, ids, { maxNewTokens: 24, rule: 'max', onToken: () => ++n < 3 });
    expect(out.length).toBe(3);
  });
});

describe('encodeChatPrompt', () => {
  it('renders the chat template with the generation prompt', () => {
    const messages = [{ role: 'user' as const, content: 'hello' }];
    const chat = encodeChatPrompt(tok, messages);
    expect(tok.chatTemplate).not.toBeNull();
    expect(chat).toEqual(tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false }));
    expect(tok.decode(chat)).toMatch(/hello\n<\|assistant\|>\n$/);
  });
});
