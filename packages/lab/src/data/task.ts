/**
 * What every data task writes: `train.jsonl`, `validation.jsonl`, `test.jsonl` (prompt/completion records) and
 * `task.json`, the task's card for benches (kind, labels, counts, baselines, source, license), plus the
 * deterministic hash split the tasks share.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PromptCompletionRecord } from '@edgetune/core';

export type SplitName = 'train' | 'validation' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'validation', 'test'];

/** The contents of `task.json` (snake_case, as the files it sits next to). */
export interface TaskCard {
  name: string;
  /** classification: a few fixed completions scored by their first token; generation: free-form completions */
  kind: 'classification' | 'generation';
  /** the completions of a classification task, sorted (leading space included) */
  labels?: string[];
  counts: Record<SplitName, number>;
  /** classification: records per completion per split */
  label_counts?: Record<SplitName, Record<string, number>>;
  /** majority_class: the most frequent completion of train (ties: the first in sort order) and its accuracy on test */
  baselines: { majority_class?: { label: string; accuracy: number } };
  /** items left out and why (duplicates, ambiguous names...) */
  dropped?: Record<string, number>;
  /** generation: mean completion length in chars and, when a tokenizer was given, in tokens (eos not counted) */
  completion_length?: { mean_chars: number; mean_tokens?: number; tokenizer?: string };
  /** how the split was made */
  split: string;
  source: string;
  license: string;
}

/**
 * Split of a key: sha256(seed + "\n" + key), its first 32 bits read as a fraction u in [0, 1): u < 0.8 train,
 * u < 0.9 validation, else test. `hash` (hex) orders each split: a fixed shuffle.
 */
export function hashSplit(key: string, seed: string): { split: SplitName; hash: string } {
  const hash = createHash('sha256').update(`${seed}\n${key}`).digest('hex');
  const u = parseInt(hash.slice(0, 8), 16) / 0x100000000;
  return { split: u < 0.8 ? 'train' : u < 0.9 ? 'validation' : 'test', hash };
}

/** Puts each item in its {@link hashSplit} split (keys must be distinct) and orders each split by hash. */
export function splitByHash<T>(items: readonly T[], keyOf: (item: T) => string, seed: string): Record<SplitName, T[]> {
  const out: Record<SplitName, { item: T; hash: string }[]> = { train: [], validation: [], test: [] };
  for (const item of items) {
    const { split, hash } = hashSplit(keyOf(item), seed);
    out[split].push({ item, hash });
  }
  const sorted = (rows: { item: T; hash: string }[]) =>
    rows.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0)).map((r) => r.item);
  return { train: sorted(out.train), validation: sorted(out.validation), test: sorted(out.test) };
}

/**
 * The majority-class baseline: the most frequent completion of `train` (ties: the first in sort order) and
 * the fraction of `test` records with that completion.
 * @throws Error when `train` or `test` is empty.
 */
export function majorityClass(
  train: readonly PromptCompletionRecord[],
  test: readonly PromptCompletionRecord[],
): { label: string; accuracy: number } {
  if (!train.length || !test.length) throw new Error('majorityClass: train and test must not be empty');
  const counts = countLabels(train);
  const label = Object.keys(counts).reduce((best, l) => (counts[l] > counts[best] ? l : best));
  return { label, accuracy: test.filter((r) => r.completion === label).length / test.length };
}

/** Records per completion, keys in sort order. */
export function countLabels(records: readonly PromptCompletionRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of records) counts[r.completion] = (counts[r.completion] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Writes the three splits as JSONL (in the given order) and `task.json` into `outDir` (created if needed).
 * For a classification task the labels, per-split label counts and the majority-class baseline are computed
 * here from the records.
 * @returns the card written and the files (absolute paths: the three splits, then task.json).
 */
export async function writeTask(
  outDir: string,
  splits: Record<SplitName, readonly PromptCompletionRecord[]>,
  card: Omit<TaskCard, 'counts' | 'labels' | 'label_counts' | 'baselines'> & { baselines?: TaskCard['baselines'] },
): Promise<{ card: TaskCard; files: string[] }> {
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const name of SPLIT_NAMES) {
    const path = join(dir, `${name}.jsonl`);
    await writeFile(path, splits[name].map((r) => `${JSON.stringify({ prompt: r.prompt, completion: r.completion })}\n`).join(''));
    files.push(path);
  }
  const counts = { train: splits.train.length, validation: splits.validation.length, test: splits.test.length };
  const { baselines, name, kind, ...rest } = card;
  // name and kind first, then the computed fields, then the rest in the caller's order
  const full: TaskCard =
    kind === 'classification'
      ? {
          name,
          kind,
          labels: Object.keys(countLabels([...splits.train, ...splits.validation, ...splits.test])),
          counts,
          label_counts: { train: countLabels(splits.train), validation: countLabels(splits.validation), test: countLabels(splits.test) },
          baselines: { majority_class: majorityClass(splits.train, splits.test), ...baselines },
          ...rest,
        }
      : { name, kind, counts, baselines: { ...baselines }, ...rest };
  const path = join(dir, 'task.json');
  await writeFile(path, `${JSON.stringify(full, null, 2)}\n`);
  files.push(path);
  return { card: full, files };
}
