// The graded data tasks (spam-assassin-3, first-names, cmudict) and task.json: disjoint deterministic splits,
// counts and majority baselines that match the files, label completions whose first tokens differ under the
// tiny model's tokenizer (label scoring reads only the first completion token).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import {
  buildSpamAssassin,
  loadSpamAssassinCorpus,
  SPAM_QUESTION,
  type SpamAssassinItem,
} from '../../packages/lab/src/data/spam-assassin.js';
import { buildSpamAssassin3, SPAM3_COMPLETION, SPAM3_QUESTION } from '../../packages/lab/src/data/spam-assassin-3.js';
import { buildFirstNames, firstNameRecords, loadFirstNames, NAME_COMPLETION } from '../../packages/lab/src/data/first-names.js';
import { buildCmudict, cmudictSplits, loadCmudict, pronunciationCompletion } from '../../packages/lab/src/data/cmudict.js';
import { majorityClass, SPLIT_NAMES, type SplitName, type TaskCard } from '../../packages/lab/src/data/task.js';
import { REPO_ROOT } from '../engine/helpers.js';

type Rec = { prompt: string; completion: string };
const tmpDirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'edgetune-data-tasks-'));
  tmpDirs.push(d);
  return d;
}
let tok: EngineTokenizer;
beforeAll(async () => {
  tok = await loadTokenizer(join(REPO_ROOT, 'models', 'edgetune-tiny-llama'));
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function readTask(dir: string): Promise<{ splits: Record<SplitName, Rec[]>; card: TaskCard }> {
  const read = async (s: SplitName) =>
    (await readFile(join(dir, `${s}.jsonl`), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Rec);
  const [train, validation, test] = await Promise.all(SPLIT_NAMES.map(read));
  return { splits: { train, validation, test }, card: JSON.parse(await readFile(join(dir, 'task.json'), 'utf8')) };
}

/** Checks what every task.json must say of its files; returns the prompts of each split. */
function checkCard(splits: Record<SplitName, Rec[]>, card: TaskCard): void {
  expect(card.counts).toEqual({ train: splits.train.length, validation: splits.validation.length, test: splits.test.length });
  const prompts = SPLIT_NAMES.flatMap((s) => splits[s].map((r) => r.prompt));
  expect(new Set(prompts).size).toBe(prompts.length); // no prompt twice, so the splits are disjoint
  if (card.kind === 'classification') {
    const majority = card.baselines.majority_class!;
    const trainCounts = new Map<string, number>();
    for (const r of splits.train) trainCounts.set(r.completion, (trainCounts.get(r.completion) ?? 0) + 1);
    expect(trainCounts.get(majority.label)).toBe(Math.max(...trainCounts.values()));
    expect(majority.accuracy).toBeCloseTo(splits.test.filter((r) => r.completion === majority.label).length / splits.test.length, 12);
  }
}

/** First token of each label under the tiny tokenizer; they must differ. */
function firstTokens(labels: string[]): number[] {
  const first = labels.map((l) => tok.encode(l, { addSpecialTokens: false })[0]);
  expect(new Set(first).size).toBe(labels.length);
  return first;
}

describe('majorityClass', () => {
  it('picks the most frequent train completion (ties: first in sort order) and scores it on test', () => {
    const r = (c: string) => ({ prompt: c, completion: c });
    expect(majorityClass([r(' b'), r(' a'), r(' b')], [r(' a'), r(' b'), r(' b'), r(' c')])).toEqual({ label: ' b', accuracy: 0.5 });
    expect(majorityClass([r(' b'), r(' a')], [r(' a')])).toEqual({ label: ' a', accuracy: 1 });
    expect(() => majorityClass([], [r(' a')])).toThrow(/not be empty/);
  });
});

describe('first-names', () => {
  it('drops names in both lists (case-insensitive) and names repeated within a list', () => {
    const { records, ambiguous } = firstNameRecords({ female: ['Mary', 'Jean', 'Ann', 'Ann'], male: ['John', 'JEAN'] });
    expect(ambiguous).toBe(1);
    expect(records).toEqual([
      { prompt: 'Name: Mary\nGender:', completion: ' female' },
      { prompt: 'Name: Ann\nGender:', completion: ' female' },
      { prompt: 'Name: John\nGender:', completion: ' male' },
    ]);
  });

  it('writes disjoint deterministic splits of the unambiguous names with a correct task.json', async () => {
    const [a, b] = [await tempDir(), await tempDir()];
    const built = await buildFirstNames({ outDir: a });
    await buildFirstNames({ outDir: b });
    for (const f of ['train.jsonl', 'validation.jsonl', 'test.jsonl', 'task.json'])
      expect(await readFile(join(b, f), 'utf8')).toBe(await readFile(join(a, f), 'utf8'));
    const { splits, card } = await readTask(a);
    expect(card).toEqual(built.task);
    checkCard(splits, card);
    const lists = loadFirstNames();
    const both = lists.female.filter((n) => lists.male.some((m) => m.toLowerCase() === n.toLowerCase()));
    expect(new Set(both.map((n) => n.toLowerCase())).size).toBe(card.dropped!.ambiguous);
    expect(card.dropped!.ambiguous).toBeGreaterThan(100);
    const prompts = new Set(SPLIT_NAMES.flatMap((s) => splits[s].map((r) => r.prompt)));
    for (const n of both) expect(prompts.has(`Name: ${n}\nGender:`)).toBe(false);
    expect(card.counts.train + card.counts.validation + card.counts.test).toBe(
      new Set(lists.female).size + new Set(lists.male).size - 2 * card.dropped!.ambiguous,
    );
    expect(card.labels).toEqual([NAME_COMPLETION.female, NAME_COMPLETION.male]);
    expect(card.baselines.majority_class!.label).toBe(' female');
    firstTokens(card.labels!);
  });
});

describe('spam-assassin-3', () => {
  let subset: SpamAssassinItem[];
  beforeAll(() => {
    // 60 messages of each group: every class present, a few seconds to parse.
    const seen = new Map<string, number>();
    subset = loadSpamAssassinCorpus().filter((m) => {
      const n = seen.get(m.group) ?? 0;
      seen.set(m.group, n + 1);
      return n < 60;
    });
  });

  it('labels the corpus groups with three completions whose first tokens differ', async () => {
    const dir = await tempDir();
    const { task } = await buildSpamAssassin3({ outDir: dir, corpus: subset });
    const { splits, card } = await readTask(dir);
    expect(card).toEqual(task);
    checkCard(splits, card);
    expect(card.labels).toEqual([' easy ham', ' hard ham', ' spam']);
    expect(card.counts.train + card.counts.validation + card.counts.test + card.dropped!.duplicates).toBe(subset.length);
    const all = SPLIT_NAMES.flatMap((s) => splits[s]);
    expect(all.filter((r) => r.completion === SPAM3_COMPLETION['hard-ham'])).toHaveLength(
      card.label_counts!.train[' hard ham'] +
        (card.label_counts!.validation[' hard ham'] ?? 0) +
        (card.label_counts!.test[' hard ham'] ?? 0),
    );
    expect(all.every((r) => r.prompt.endsWith(`\n\n${SPAM3_QUESTION}`))).toBe(true);
    firstTokens(card.labels!);
  });

  it('puts each message in the same split as the spam/ham task does', async () => {
    const [d2, d3] = [await tempDir(), await tempDir()];
    await buildSpamAssassin({ outDir: d2, corpus: subset });
    await buildSpamAssassin3({ outDir: d3, corpus: subset });
    const [two, three] = [await readTask(d2), await readTask(d3)];
    checkCard(two.splits, two.card);
    for (const s of SPLIT_NAMES) {
      expect(three.splits[s].map((r) => r.prompt.replace(SPAM3_QUESTION, SPAM_QUESTION))).toEqual(two.splits[s].map((r) => r.prompt));
      expect(three.splits[s].map((r) => r.completion === ' spam')).toEqual(two.splits[s].map((r) => r.completion === ' spam'));
    }
  });
});

describe('cmudict', () => {
  it('samples alphabetic words by hash: the test set stays when the other sizes change; stress digits dropped unless asked', () => {
    const dict = loadCmudict();
    const small = cmudictSplits(dict, { sizes: { train: 30, validation: 10, test: 20 } });
    const other = cmudictSplits(dict, { sizes: { train: 5, validation: 3, test: 25 } });
    expect(other.test.slice(0, 20)).toEqual(small.test);
    const prompts = SPLIT_NAMES.flatMap((s) => small[s].map((r) => r.prompt));
    expect(new Set(prompts).size).toBe(60);
    for (const r of prompts) expect(r).toMatch(/^Word: [a-z]+\nPronunciation:$/);
    for (const s of SPLIT_NAMES) for (const r of small[s]) expect(r.completion).toMatch(/^( [A-Z]+)+$/);
    const word = small.test[0].prompt.slice('Word: '.length, -'\nPronunciation:'.length).toUpperCase();
    expect(small.test[0].completion).toBe(pronunciationCompletion(dict[word]));
    expect(cmudictSplits(dict, { sizes: { train: 0, validation: 0, test: 20 }, stress: true }).test[0].completion).toBe(` ${dict[word]}`);
    expect(pronunciationCompletion('HH AH0 L OW1')).toBe(' HH AH L OW');
    expect(() => cmudictSplits(dict, { sizes: { train: 200000 } })).toThrow(RangeError);
    expect(() => cmudictSplits(dict, { sizes: { test: -1 } })).toThrow(/non-negative integer/);
  });

  it('writes a generation task.json with no majority baseline and the mean completion length in tokens', async () => {
    const dir = await tempDir();
    const { task } = await buildCmudict({
      outDir: dir,
      sizes: { train: 40, validation: 10, test: 10 },
      tokenizer: tok,
      tokenizerName: 'tiny',
    });
    const { splits, card } = await readTask(dir);
    expect(card).toEqual(task);
    checkCard(splits, card);
    expect(card).toMatchObject({ kind: 'generation', baselines: {}, counts: { train: 40, validation: 10, test: 10 } });
    expect(card.labels).toBeUndefined();
    const all = SPLIT_NAMES.flatMap((s) => splits[s]);
    const meanTokens = all.reduce((a, r) => a + tok.encode(r.completion, { addSpecialTokens: false }).length, 0) / all.length;
    expect(card.completion_length).toEqual({
      mean_chars: all.reduce((a, r) => a + r.completion.length, 0) / all.length,
      mean_tokens: meanTokens,
      tokenizer: 'tiny',
    });
  });

  it('is built by the lab CLI with size options', async () => {
    const out = join(await tempDir(), 'cmu');
    const cli = join(REPO_ROOT, 'packages', 'lab', 'dist', 'cli.js');
    const r = spawnSync(
      process.execPath,
      [cli, 'data', 'cmudict', '--out', out, '--train', '20', '--validation', '5', '--test', '5', '--stress'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const { splits, card } = await readTask(out);
    expect(card.counts).toEqual({ train: 20, validation: 5, test: 5 });
    expect(card.completion_length!.tokenizer).toBe('edgetune-tiny-llama');
    expect(splits.test.some((x) => /\d/.test(x.completion))).toBe(true);
  });
});
