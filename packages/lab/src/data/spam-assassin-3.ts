/**
 * The SpamAssassin corpus as a three-class task: easy ham / hard ham / spam, the corpus's own groups. Hard ham
 * is legitimate mail that looks like spam (the corpus's description), so this task is harder than spam/ham.
 * Same prompts (but the question), deduplication and split as the binary task (spam-assassin.ts): a message is
 * in the same split in both. Not balanced: the corpus's proportions are kept (hard ham is about 4% of it), so
 * the majority-class baseline (easy ham) is high; task.json reports it.
 */
import {
  buildMailSplits,
  DEFAULT_BODY_CHARS,
  DEFAULT_SPLIT_SEED,
  SPAM_ASSASSIN_LICENSE,
  SPAM_ASSASSIN_SOURCE,
  type SpamAssassinItem,
} from './spam-assassin.js';
import { writeTask, type TaskCard } from './task.js';

/** The question that ends every prompt of the three-class task. */
export const SPAM3_QUESTION = 'Is this message spam, easy ham or hard ham? Answer:';
/**
 * Completions (leading space). Their first tokens differ under the tiny model's tokenizer (" spam" -> " sp",
 * " easy", " hard"), as label scoring needs.
 */
export const SPAM3_COMPLETION = { 'easy-ham': ' easy ham', 'hard-ham': ' hard ham', spam: ' spam' } as const;

/** Class of a corpus group: spam-1/spam-2 spam, hard-ham-1 hard ham, easy-ham-1/easy-ham-2 easy ham. */
export function spam3LabelOfGroup(group: string): keyof typeof SPAM3_COMPLETION {
  return group.startsWith('spam') ? 'spam' : group.startsWith('hard-ham') ? 'hard-ham' : 'easy-ham';
}

/** Result of {@link buildSpamAssassin3}: the task card written and the files (absolute paths). */
export interface SpamAssassin3Build {
  task: TaskCard;
  files: string[];
}

/**
 * Writes `train.jsonl`, `validation.jsonl`, `test.jsonl` and `task.json` into `outDir` (created if needed):
 * prompts as {@link spamPrompt} with {@link SPAM3_QUESTION}, completions {@link SPAM3_COMPLETION}. Duplicates
 * and split as {@link buildMailSplits}. Takes about 10 s on the whole corpus.
 * @param opts.corpus the messages (default: the whole corpus); a subset gives a smaller task.
 */
export async function buildSpamAssassin3(opts: {
  outDir: string;
  bodyChars?: number;
  seed?: string;
  corpus?: SpamAssassinItem[];
}): Promise<SpamAssassin3Build> {
  const seed = opts.seed ?? DEFAULT_SPLIT_SEED;
  const m = await buildMailSplits(
    { question: SPAM3_QUESTION, completionOf: (g) => SPAM3_COMPLETION[spam3LabelOfGroup(g)] },
    { bodyChars: opts.bodyChars ?? DEFAULT_BODY_CHARS, seed, corpus: opts.corpus },
  );
  const { card, files } = await writeTask(opts.outDir, m.splits, {
    name: 'spam-assassin-3',
    kind: 'classification',
    dropped: { duplicates: m.duplicatesDropped, conflicting_labels: m.conflictingLabels },
    split: `as spam-assassin: sha256("${seed}\\n" + the spam/ham prompt): 80/10/10`,
    source: `${SPAM_ASSASSIN_SOURCE} (groups easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2)`,
    license: SPAM_ASSASSIN_LICENSE,
  });
  return { task: card, files };
}
