// The lab's datasets: e-mail to prompt (postal-mime + html-to-text), the SpamAssassin splits, corpus continuation.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJsonlText } from '../../packages/core/src/jsonl.js';
import { classificationLabels } from '../../packages/engine/src/data/encode.js';
import {
  SPAM_QUESTION,
  buildSpamAssassin,
  loadSpamAssassinCorpus,
  spamLabelOfGroup,
  spamPrompt,
  spamPromptFromEmail,
  spamRecord,
  type SpamAssassinBuild,
} from '../../packages/lab/src/data/spam-assassin.js';
import { buildCorpusContinuation, continuationRecords } from '../../packages/lab/src/data/corpus-continuation.js';
import { htmlToText, parseEmail } from '../../packages/lab/src/data/mime.js';

const tmpDirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'edgetune-lab-data-'));
  tmpDirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

const subjectOf = async (header: string) => (await parseEmail(`Subject: ${header}\n\nx`)).subject;

describe('e-mail parsing', () => {
  it('decodes RFC 2047 subjects, unfolding and joining adjacent encoded-words', async () => {
    expect(await subjectOf('=?utf-8?B?SGVsbG8g8J+Riw==?=')).toBe('Hello 👋');
    expect(await subjectOf('=?ISO-8859-1?Q?caf=E9_cr=E8me?= is =?iso-8859-1?q?gr=FCn?=')).toBe('café crème is grün');
    // whitespace between encoded-words vanishes; a UTF-8 char split across two words survives
    expect(await subjectOf('=?UTF-8?Q?=E2=9C?= =?UTF-8?Q?=93_done?=')).toBe('✓ done');
    // an unknown charset is read as windows-1252 (postal-mime), so ASCII text survives
    expect(await subjectOf('=?x-unknown?Q?abc?= plain')).toBe('abc plain');
    expect(await subjectOf('no encoding here')).toBe('no encoding here');

    const raw = [
      'From someone@example.com  Thu Aug 22 12:36:23 2002',
      'From: A <a@example.com>',
      'Subject: =?utf-8?B?R3LDvMOfZQ==?=',
      ' =?utf-8?Q?_aus_K=C3=B6ln?=',
      '\tand more',
      'Content-Type: text/plain',
      '',
      'Body line.',
    ].join('\r\n');
    expect(await parseEmail(raw)).toEqual({ subject: 'Grüße aus Köln\tand more', body: 'Body line.\n' });
    expect(await spamPromptFromEmail(raw)).toBe(`Subject: Grüße aus Köln and more\n\nBody line.\n\n${SPAM_QUESTION}`);
  });

  it('decodes quoted-printable bodies in the first text/plain part', async () => {
    const utf8 = [
      'Subject: qp',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Caf=C3=A9 =E2=82=AC5 soft=',
      'break =3D ok',
    ];
    expect((await parseEmail(utf8.join('\n'))).body).toBe('Café €5 softbreak = ok\n');
    const raw = [
      'Subject: Offer',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      'preamble',
      '--outer',
      'Content-Type: multipart/alternative;',
      '\tboundary=inner',
      '',
      '--inner',
      'Content-Type: text/plain; charset=ISO-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Gr=FC=DFe, only =A35 to=',
      'day!',
      '--inner',
      'Content-Type: text/html',
      '',
      '<p>HTML version</p>',
      '--inner--',
      '--outer',
      'Content-Type: text/plain',
      'Content-Disposition: attachment; filename=a.txt',
      '',
      'attachment text',
      '--outer--',
    ].join('\n');
    expect(await parseEmail(raw)).toEqual({ subject: 'Offer', body: 'Grüße, only £5 today!\n' });
  });

  it('falls back to HTML turned into text (base64) and skips blank text parts', async () => {
    const html =
      '<html><head><style>p{color:red}</style></head><body><p>Buy&nbsp;<b>N</b>OW</p><br>cheap &amp; fast<!-- x --></body></html>';
    const raw = [
      'Subject: Deal',
      'Content-Type: multipart/alternative; boundary=b1',
      '',
      '--b1',
      'Content-Type: text/plain',
      '',
      '   ',
      '--b1',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      ...Buffer.from(html)
        .toString('base64')
        .match(/.{1,60}/g)!,
      '--b1--',
    ].join('\n');
    expect(htmlToText(html).replace(/\s+/g, ' ').trim()).toBe('Buy NOW cheap & fast');
    expect(await spamPromptFromEmail(raw)).toBe(`Subject: Deal\n\nBuy NOW cheap & fast\n\n${SPAM_QUESTION}`);
  });

  it('keeps the words a reader sees: no link targets, images, titles, rules, quote marks or upper-cased headings', () => {
    const html =
      '<title>T</title><h1>Big news</h1><table><tr><td>a</td><td>b</td></tr></table><a href="http://x.example/">click</a>' +
      '<img src="y.gif" alt="pic"><hr><blockquote>q</blockquote>';
    expect(htmlToText(html).replace(/\s+/g, ' ').trim()).toBe('Big news a b click q');
  });

  it('turns HTML in a text/plain part into text, and reads a part whose Content-Type is malformed', async () => {
    expect((await parseEmail('Subject: a\nContent-Type: text/plain\n\nSee <b>this</b> <a href="http://x.example/">offer</a>')).body).toBe(
      'See this offer',
    );
    expect((await parseEmail('Subject: a\nContent-Type: TEXT/PLAIN charset=US-ASCII\n\nmalformed type')).body).toBe('malformed type\n');
    expect(await parseEmail('')).toEqual({ subject: '', body: '' });
  });

  it('reads bytes in the declared charset, and keeps U+FFFD of decoded text as it is', async () => {
    const head = 'Subject: a\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n';
    expect((await parseEmail(Buffer.from(`${head}caf\xe9`, 'latin1'))).body).toBe('café\n');
    expect((await parseEmail(`${head}now\ufffds`)).body).toBe('now\ufffds\n');
  });

  it('builds the documented prompt and labels', async () => {
    expect(spamPrompt('  Hello\n there ', 'x'.repeat(500), { bodyChars: 10 })).toBe(
      `Subject: Hello there\n\nxxxxxxxxxx\n\n${SPAM_QUESTION}`,
    );
    expect(spamPrompt('', 'a  b\n\nc')).toBe(`Subject: \n\na b c\n\n${SPAM_QUESTION}`);
    expect(spamLabelOfGroup('spam-2')).toBe('spam');
    expect(spamLabelOfGroup('hard-ham-1')).toBe('ham');
    expect(await spamRecord('Subject: s\n\nb', 'spam')).toEqual({ prompt: `Subject: s\n\nb\n\n${SPAM_QUESTION}`, completion: ' spam' });
  });
});

describe('buildSpamAssassin', () => {
  let dirA: string;
  let result: SpamAssassinBuild;
  let total: number;
  beforeAll(async () => {
    dirA = await tempDir();
    const corpus = loadSpamAssassinCorpus();
    total = corpus.length;
    result = await buildSpamAssassin({ outDir: dirA, corpus });
  });

  it('writes three splits whose counts add up to the corpus minus duplicates', async () => {
    expect(total).toBe(6046);
    expect(result.duplicatesDropped).toBeGreaterThan(0);
    expect(result.train + result.validation + result.test).toBe(total - result.duplicatesDropped);
    expect(result.files.map((f) => f.slice(dirA.length + 1))).toEqual([
      'train.jsonl',
      'validation.jsonl',
      'test.jsonl',
      'task.json',
      'README.md',
    ]);
    const n = total - result.duplicatesDropped;
    expect(result.train / n).toBeGreaterThan(0.77);
    expect(result.train / n).toBeLessThan(0.83);
    expect(result.validation / n).toBeGreaterThan(0.08);
    expect(result.test / n).toBeGreaterThan(0.08);
    const card = await readFile(join(dirA, 'README.md'), 'utf8');
    expect(card).toContain('Apache-2.0');
    expect(card).toContain(`| train | ${result.train} |`);
  });

  it('has valid records, no prompt twice, both labels in every split', async () => {
    const seen = new Map<string, string>();
    for (const split of ['train', 'validation', 'test'] as const) {
      const recs = parseJsonlText(await readFile(join(dirA, `${split}.jsonl`), 'utf8'), split);
      expect(recs).toHaveLength(result[split]);
      let spam = 0;
      const bad: string[] = [];
      for (const r of recs) {
        if (!('prompt' in r)) throw new Error('chat record in spam data');
        if (seen.has(r.prompt)) bad.push(`duplicate in ${split} and ${seen.get(r.prompt)}`);
        seen.set(r.prompt, split);
        if (r.completion !== ' spam' && r.completion !== ' ham') bad.push(`completion ${r.completion}`);
        if (!r.prompt.startsWith('Subject: ') || !r.prompt.endsWith(`\n\n${SPAM_QUESTION}`)) bad.push(`prompt ${r.prompt}`);
        if (r.completion === ' spam') spam++;
      }
      expect(bad).toEqual([]);
      expect(spam).toBe(result.labelCounts[split].spam);
      const frac = spam / recs.length;
      expect(frac).toBeGreaterThan(0.2); // corpus: 1896 spam of 6046
      expect(frac).toBeLessThan(0.45);
      expect(classificationLabels(recs)).toEqual([' ham', ' spam']);
    }
  });

  it('is deterministic', async () => {
    const dirB = await tempDir();
    const again = await buildSpamAssassin({ outDir: dirB });
    expect(again).toEqual({ ...result, files: result.files.map((f) => f.replace(dirA, dirB)) });
    for (const f of ['train.jsonl', 'validation.jsonl', 'test.jsonl', 'task.json', 'README.md']) {
      expect(await readFile(join(dirB, f), 'utf8')).toBe(await readFile(join(dirA, f), 'utf8'));
    }
  });
});

describe('buildCorpusContinuation (recovery-tuning task)', () => {
  it('cuts text into consecutive prompt/completion windows at word boundaries, dropping a short tail', () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`);
    const recs = continuationRecords(words.join('  \n '), 40, 20);
    expect(recs.length).toBeGreaterThan(5);
    for (const r of recs) {
      expect(r.prompt.length).toBeGreaterThanOrEqual(40 - 1);
      expect(r.prompt.length).toBeLessThan(40 + 5);
      expect(r.completion.startsWith(' ')).toBe(true);
      expect(r.completion.length).toBeGreaterThanOrEqual(20);
    }
    // Concatenated, the records are the text's words in order (whitespace collapsed), minus a tail.
    const joined = recs
      .map((r) => `${r.prompt}${r.completion}`)
      .join(' ')
      .split(' ');
    expect(joined).toEqual(words.slice(0, joined.length));
    expect(words.length - joined.length).toBeLessThan(20);
    expect(continuationRecords('too short', 40, 20)).toEqual([]);
  });

  it('writes train from the training documents and alternating validation / test records from the held-out ones', async () => {
    const doc = (id: string, n: number) => ({ id, text: Array.from({ length: n }, (_, i) => `${id}-${i}`).join(' ') });
    const corpus = {
      train: [doc('a', 300), doc('b', 300)],
      validation: [doc('v', 400)],
      description: 'test corpus',
      license: 'test license',
    };
    const dir = await mkdtemp(join(tmpdir(), 'edgetune-corpus-'));
    try {
      const r = await buildCorpusContinuation({ outDir: dir, promptChars: 60, completionChars: 30, maxHeldOut: 5, corpus });
      const read = async (f: string) => parseJsonlText(await readFile(join(dir, f), 'utf8')) as { prompt: string; completion: string }[];
      const [train, val, test] = await Promise.all(['train.jsonl', 'validation.jsonl', 'test.jsonl'].map(read));
      expect([train.length, val.length, test.length]).toEqual([r.train, r.validation, r.test]);
      expect(train.every((x) => /^[ab]-/.test(x.prompt))).toBe(true);
      expect(val).toHaveLength(5);
      expect(test).toHaveLength(5);
      expect([...val, ...test].every((x) => x.prompt.startsWith('v-'))).toBe(true);
      const held = continuationRecords(corpus.validation[0].text, 60, 30);
      expect(val[1]).toEqual(held[2]);
      expect(test[1]).toEqual(held[3]);
      expect(await readFile(join(dir, 'README.md'), 'utf8')).toContain('test corpus');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
