// Exact match of free-form generation with the project's tiny model: batched greedy generation with the KV cache
// gives generate()'s tokens, and an example scores 1 exactly when its completion is what greedy generation produces.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadTokenizer, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { loadExamples } from '../../packages/engine/src/tune/run.js';
import { plainPath } from '../../packages/engine/src/tune/artifacts.js';
import { encodePrompt } from '../../packages/engine/src/data/encode.js';
import { generate, generateBatch } from '../../packages/engine/src/infer/generate.js';
import { classTokensOf, evaluatePaths, exactMatch, EvaluationError } from '../../packages/engine/src/infer/evaluate.js';
import type { ExitPath } from '../../packages/engine/src/infer/voting.js';
import type { Example } from '../../packages/engine/src/tune/batches.js';
import { IGNORE_INDEX } from '../../packages/core/src/index.js';
import { REPO_ROOT } from './helpers.js';

const MODEL_DIR = join(REPO_ROOT, 'models', 'edgetune-tiny-llama');
let dir: string;
let model: LlamaModel;
let tok: EngineTokenizer;
/** The final layer's path and an early exit reading layer 3 through the same norm and head. */
let paths: ExitPath[];

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-exact-match-'));
  model = LlamaModel.load(MODEL_DIR);
  tok = await loadTokenizer(MODEL_DIR);
  paths = [{ ...plainPath(model), layer: 3 }, plainPath(model)];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The greedy continuation's text of a prompt (at most n tokens, eos ends it). */
function greedyText(ps: ExitPath[], prompt: string, n: number): string {
  const out = generate(model, ps, encodePrompt(tok, prompt), { maxNewTokens: n, rule: 'max', stopIds: [tok.eosId!] });
  return tok.decode(out, { skipSpecialTokens: true });
}

async function examplesOf(records: { prompt: string; completion: string }[], name: string): Promise<Example[]> {
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  return (await loadExamples(file, tok, 128)).examples;
}

describe('generateBatch', () => {
  it('gives each row the tokens generate() gives it alone, each within its own budget', () => {
    const prompts = ['Word: whale\nPronunciation:', 'Word: ocean\nPronunciation:'].map((p) => encodePrompt(tok, p));
    expect(prompts[0].length).toBe(prompts[1].length);
    const outs = generateBatch(model, paths, prompts, { maxNewTokens: [6, 3], rule: 'mean', stopIds: [tok.eosId!] });
    prompts.forEach((p, b) =>
      expect(outs[b]).toEqual(generate(model, paths, p, { maxNewTokens: [6, 3][b], rule: 'mean', stopIds: [tok.eosId!] })),
    );
    expect(outs[1].length).toBeLessThanOrEqual(3);
    expect(() => generateBatch(model, paths, [[5, 6], [7]], { maxNewTokens: 2, rule: 'max' })).toThrow(/same length/);
  });
});

describe('exactMatch', () => {
  it('scores 1 for the completion greedy generation produces and 0 for another, voted and per exit', async () => {
    const prompts = ['Word: whale\nPronunciation:', 'Name: Mary\nGender:'];
    const voted = greedyText(paths, prompts[0], 5);
    expect(voted.trim().length).toBeGreaterThan(0);
    const right = await examplesOf([{ prompt: prompts[0], completion: voted }], 'right');
    const wrong = await examplesOf([{ prompt: prompts[1], completion: ` ${greedyText(paths, prompts[1], 5).trim()} zz` }], 'wrong');
    const opts = { tokenizer: tok, rule: 'max' as const, maxNewTokens: 5 };
    const r = exactMatch(model, paths, right, opts);
    expect(r.voted).toBe(1);
    expect(r.perExit).toHaveLength(2);
    expect(r.rule).toBe('max');
    expect(exactMatch(model, paths, wrong, opts).voted).toBe(0);
    const both = exactMatch(model, paths, [...right, ...wrong], opts);
    expect(both).toMatchObject({ voted: 0.5, examples: 2 });
    // Per exit: each path alone scores the completion its own greedy generation produces.
    const early = await examplesOf([{ prompt: prompts[0], completion: greedyText([paths[0]], prompts[0], 5) }], 'early');
    expect(exactMatch(model, paths, early, opts).perExit[0]).toBe(1);
    expect(exactMatch(model, [paths[0]], early, opts)).toMatchObject({ perExit: [1], voted: 1 });
  });

  it('is reported by evaluatePaths when asked, and refuses data without completion tokens', async () => {
    const recs = [{ prompt: 'Word: whale\nPronunciation:', completion: greedyText(paths, 'Word: whale\nPronunciation:', 4) }];
    const ex = await examplesOf(recs, 'eval');
    const r = evaluatePaths(model, paths, ex, { padId: tok.padId ?? 0, generate: { tokenizer: tok, rule: 'max', maxNewTokens: 4 } });
    expect(r.exactMatch).toMatchObject({ voted: 1, rule: 'max', examples: 1 });
    expect(evaluatePaths(model, paths, ex, { padId: tok.padId ?? 0 }).exactMatch).toBeUndefined();
    const promptOnly = [{ inputIds: ex[0].inputIds, labels: ex[0].labels.map(() => IGNORE_INDEX) }];
    expect(() => exactMatch(model, paths, promptOnly, { tokenizer: tok })).toThrow(EvaluationError);
  });
});

describe('classTokensOf', () => {
  it('sees free-form completions that share a few first tokens as generation data, not classes', async () => {
    const phones = ['K AE T', 'K AA R', 'K OW T', 'D AO G', 'D IH G', 'D AH K'];
    const gen = await examplesOf(
      Array.from({ length: 40 }, (_, i) => ({
        prompt: `Word: w${i}\nPronunciation:`,
        completion: ` ${phones[i % 6]} ${'S '.repeat(i % 7)}`.trimEnd(),
      })),
      'gen',
    );
    expect(classTokensOf(gen)).toBeNull();
    const cls = await examplesOf(
      ['female', 'male', 'female'].map((g, i) => ({ prompt: `Name: n${i}\nGender:`, completion: ` ${g}` })),
      'cls',
    );
    expect(classTokensOf(cls)).toHaveLength(2);
  });
});
