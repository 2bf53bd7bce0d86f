/**
 * A text-continuation task from the base model's own pretraining corpus (pretrain/corpus.ts): each record's
 * prompt is a passage and its completion the words that follow. Tuning on it is the "recovery" tuning that
 * pruning papers run after compression (LLM-Pruner §3.3, SparseGPT's LoRA follow-ups): the score after tuning
 * (perplexity of the completions) depends on what compression left of the model's language knowledge, which a
 * classification task learnt by the adapter and exit heads alone does not (the uncompressed model tunes to no
 * better spam accuracy than compressed ones: bench/results/spam-dense-seeds-2026-12-05.json).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadPretrainCorpus, type Corpus } from '../pretrain/corpus.js';
import type { PromptCompletionRecord } from '@edgetune/core';

/** Default characters of context (prompt) and of continuation (completion) per record. */
export const CONTINUATION_PROMPT_CHARS = 320;
export const CONTINUATION_COMPLETION_CHARS = 160;

/**
 * Cuts `text` (whitespace collapsed) into consecutive, non-overlapping records of about `promptChars` +
 * `completionChars` characters, cut at word boundaries (at least that many minus one: a window closes at the
 * first word that brings its words plus one space each to the count); the completion keeps its leading space
 * (it continues the prompt). A tail shorter than a whole record is dropped.
 */
export function continuationRecords(
  text: string,
  promptChars = CONTINUATION_PROMPT_CHARS,
  completionChars = CONTINUATION_COMPLETION_CHARS,
): PromptCompletionRecord[] {
  const words = text.split(/\s+/).filter(Boolean);
  const out: PromptCompletionRecord[] = [];
  let i = 0;
  const take = (chars: number): string | null => {
    const start = i;
    let n = 0;
    while (i < words.length && n < chars) n += words[i++]!.length + 1; // each word and one space
    return n >= chars ? words.slice(start, i).join(' ') : null;
  };
  for (;;) {
    const prompt = take(promptChars);
    const completion = prompt === null ? null : take(completionChars);
    if (prompt === null || completion === null) break;
    out.push({ prompt, completion: ` ${completion}` });
  }
  return out;
}

/** Result of {@link buildCorpusContinuation}: records per split and the files written (absolute paths). */
export interface CorpusContinuationBuild {
  train: number;
  validation: number;
  test: number;
  files: string[];
}

/**
 * Writes `train.jsonl` (records from the corpus's training documents, in corpus order), `validation.jsonl` and
 * `test.jsonl` (the held-out documents' records, alternating, at most `maxHeldOut` each) and a `README.md` data
 * card into `outDir`. Deterministic: the corpus split is by document id (pretrain/corpus.ts), the held-out
 * records are never in training. Takes well under a second.
 */
export async function buildCorpusContinuation(opts: {
  outDir: string;
  promptChars?: number;
  completionChars?: number;
  maxHeldOut?: number;
  corpus?: Corpus;
}): Promise<CorpusContinuationBuild> {
  const corpus = opts.corpus ?? loadPretrainCorpus();
  const pc = opts.promptChars ?? CONTINUATION_PROMPT_CHARS,
    cc = opts.completionChars ?? CONTINUATION_COMPLETION_CHARS,
    max = opts.maxHeldOut ?? 400;
  const train = corpus.train.flatMap((d) => continuationRecords(d.text, pc, cc));
  const heldOut = corpus.validation.flatMap((d) => continuationRecords(d.text, pc, cc));
  const validation = heldOut.filter((_, k) => k % 2 === 0).slice(0, max),
    test = heldOut.filter((_, k) => k % 2 === 1).slice(0, max);
  const outDir = resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  for (const [name, rows] of [
    ['train', train],
    ['validation', validation],
    ['test', test],
  ] as const) {
    const path = join(outDir, `${name}.jsonl`);
    await writeFile(path, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    files.push(path);
  }
  const readme = join(outDir, 'README.md');
  await writeFile(
    readme,
    `# Text continuation from the base model's pretraining corpus (JSONL)

Built by \`buildCorpusContinuation\` (packages/lab/src/data/corpus-continuation.ts); regenerate instead of editing.

- **Source**: ${corpus.description}. ${corpus.license}
- **Fields**: \`prompt\` (about ${pc} characters of a passage), \`completion\` (the next ~${cc} characters, leading space
  included); consecutive, non-overlapping windows cut at word boundaries, whitespace collapsed.
- **Split**: the corpus's own document split (packages/lab/src/pretrain/corpus.ts, by document id): train =
  records of the training documents (the model was pretrained on them: tuning on them recovers what compression
  removed); validation and test = records of the held-out documents, alternating, at most ${max} each.
- **Use**: score the completions' perplexity after tuning a compressed model (recovery tuning).

| split | records |
|---|---|
| train | ${train.length} |
| validation | ${validation.length} |
| test | ${test.length} |
`,
  );
  files.push(readme);
  return { train: train.length, validation: validation.length, test: test.length, files };
}
