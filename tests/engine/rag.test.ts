// RAG: Okapi BM25 retrieval over training records, the example's own record excluded, prompt assembly within
// the token budget, the index's JSON round trip, and the bundles that `eval` / `infer` run with retrieval.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadTokenizer, type EngineTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { loadExamples, runTuning, TuneConfigError, type TuneJobOptions } from '../../packages/engine/src/tune/run.js';
import { loadEdgeAdapter, plainPath } from '../../packages/engine/src/tune/artifacts.js';
import { evaluatePaths } from '../../packages/engine/src/infer/evaluate.js';
import {
  assembleContext,
  augmentPrompt,
  augmentRecord,
  loadRagAugmentation,
  RAG_INDEX_FILE,
  RagIndex,
  RagIndexError,
  RagOptionsError,
  resolveRagOptions,
  type RagAugmentation,
} from '../../packages/engine/src/retrieve/index.js';
import type { TrainingRecord } from '../../packages/core/src/jsonl.js';
import { REPO_ROOT } from './helpers.js';

const MODEL = join(REPO_ROOT, 'models', 'edgetune-tiny-llama');
const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });

/** Mail-like records, each with a few words no other record has. */
const TRAIN: TrainingRecord[] = [
  { prompt: 'Subject: cheap pills discount pharmacy\nAnswer:', completion: ' spam' },
  { prompt: 'Subject: meeting agenda for the quarterly review\nAnswer:', completion: ' ham' },
  { prompt: 'Subject: win a free cruise now\nAnswer:', completion: ' spam' },
  { prompt: 'Subject: lunch with the team on friday\nAnswer:', completion: ' ham' },
  { prompt: 'Subject: zebra quartz lottery winner\nAnswer:', completion: ' spam' },
  { prompt: 'Subject: kernel patch review for the scheduler\nAnswer:', completion: ' ham' },
];
const VAL: TrainingRecord[] = [
  { prompt: 'Subject: pharmacy pills cheap\nAnswer:', completion: ' spam' },
  { prompt: 'Subject: scheduler kernel patch\nAnswer:', completion: ' ham' },
  { prompt: 'Subject: quartz zebra\nAnswer:', completion: ' spam' },
  { prompt: 'Subject: the quarterly meeting\nAnswer:', completion: ' ham' },
];
const jsonl = (recs: TrainingRecord[]) => `${recs.map((r) => JSON.stringify(r)).join('\n')}\n`;

let dir: string;
let tok: EngineTokenizer;

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-rag-'));
  writeFileSync(join(dir, 'train.jsonl'), jsonl(TRAIN));
  writeFileSync(join(dir, 'val.jsonl'), jsonl(VAL));
  tok = await loadTokenizer(MODEL);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const augmentation = (o: Partial<RagAugmentation> = {}): RagAugmentation => ({
  index: RagIndex.build(TRAIN),
  k: 2,
  contextShare: 0.6,
  maxLength: 256,
  ...o,
});
const count = (s: string) => tok.encode(s, { addSpecialTokens: false }).length;

describe('BM25 index', () => {
  it('ranks the record with the query words first, with Okapi BM25 scores', () => {
    const index = RagIndex.build(TRAIN);
    const hits = index.retrieve('ZEBRA quartz!', 3);
    expect(hits.map((h) => h.index)).toEqual([4]); // only record 4 shares a term; case and punctuation ignored
    // Okapi BM25 (k1 = 1.2, b = 0.75, Lucene's idf): two terms, each in 1 of 6 documents, tf 1; lengths in words.
    const lens = TRAIN.map((r) => ('prompt' in r ? r.prompt : '').split(/[\s\p{P}]+/u).filter(Boolean).length);
    const avg = lens.reduce((a, b) => a + b, 0) / lens.length;
    const idf = Math.log(1 + (6 - 1 + 0.5) / (1 + 0.5));
    const term = (idf * (1 * 2.2)) / (1 + 1.2 * (1 - 0.75 + (0.75 * lens[4]!) / avg));
    expect(hits[0]!.score).toBeCloseTo(2 * term, 10);
    expect(index.retrieve('cheap pharmacy pills', 1)[0]!.document).toEqual({ prompt: TRAIN[0]!.prompt, completion: ' spam' });
    expect(index.retrieve('nothing matches here xyzzy', 2)).toEqual([]);
  });

  it('breaks ties by document index and never returns the excluded record', () => {
    const twins = RagIndex.build([
      { prompt: 'alpha beta', completion: ' a' },
      { prompt: 'gamma delta', completion: ' b' },
      { prompt: 'alpha beta', completion: ' c' },
    ]);
    expect(twins.retrieve('alpha', 3).map((h) => h.index)).toEqual([0, 2]);
    expect(twins.retrieve('alpha', 3, { exclude: 0 }).map((h) => h.index)).toEqual([2]);
  });

  it('searches chat records by their user turns', () => {
    const chat: TrainingRecord = {
      messages: [
        { role: 'system', content: 'classify mail' },
        { role: 'user', content: 'walrus invoice overdue' },
        { role: 'assistant', content: 'spam' },
      ],
    };
    const index = RagIndex.build([chat, ...TRAIN]);
    expect(index.documents[0]).toEqual({ prompt: 'walrus invoice overdue', completion: 'spam' });
    expect(index.retrieve('classify', 1)).toEqual([]); // the system turn is not indexed
    const rag = { index, k: 1, contextShare: 0.6, maxLength: 256 };
    const aug = augmentRecord(tok, rag, {
      messages: [
        { role: 'user', content: 'walrus overdue?' },
        { role: 'assistant', content: 'spam' },
      ],
    });
    expect(aug).toEqual({
      messages: [
        { role: 'user', content: 'walrus invoice overduespam\n\nwalrus overdue?' },
        { role: 'assistant', content: 'spam' },
      ],
    });
  });

  it('round-trips through JSON and gives identical results', () => {
    const index = RagIndex.build(TRAIN);
    const back = RagIndex.fromJSON(JSON.parse(JSON.stringify(index.toJSON())));
    const file = join(dir, 'index.json');
    index.save(file);
    const loaded = RagIndex.load(file);
    for (const q of ['review', 'cheap free cruise', 'the team', 'zebra', ...VAL.map((r) => ('prompt' in r ? r.prompt : ''))]) {
      expect(back.retrieve(q, 3)).toEqual(index.retrieve(q, 3));
      expect(loaded.retrieve(q, 3, { exclude: 1 })).toEqual(index.retrieve(q, 3, { exclude: 1 }));
    }
    expect(() => RagIndex.fromJSON({ ...index.toJSON(), documents: [] })).toThrow(RagIndexError);
    expect(() => RagIndex.fromJSON({ ...index.toJSON(), format: 'x' } as never)).toThrow(/format "x"/);
  });
});

describe('prompt assembly', () => {
  const docs = [
    { prompt: 'Subject: first retrieved example about pills\nAnswer:', completion: ' spam' },
    { prompt: 'Subject: second retrieved example about meetings\nAnswer:', completion: ' ham' },
  ];
  const whole = (d: (typeof docs)[number]) => `${d.prompt}${d.completion}\n\n`;

  it('joins the examples, best first, each its prompt then its completion, with a blank line', () => {
    expect(assembleContext(tok, docs, 1000)).toBe(whole(docs[0]!) + whole(docs[1]!));
    const prompt = VAL[0]!.prompt as string;
    const rag = augmentation();
    const hits = rag.index.retrieve(prompt, 2);
    expect(augmentPrompt(tok, rag, prompt)).toBe(hits.map((h) => `${h.document.prompt}${h.document.completion}\n\n`).join('') + prompt);
  });

  it('drops the lowest-ranked examples first, then cuts the start of the one left', () => {
    const one = count(whole(docs[0]!));
    expect(assembleContext(tok, docs, one)).toBe(whole(docs[0]!)); // both do not fit: the second goes
    const cut = assembleContext(tok, docs, one - 5);
    expect(count(cut)).toBeLessThanOrEqual(one - 5);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.endsWith('Answer: spam\n\n')).toBe(true); // the answer survives
    expect(whole(docs[0]!).endsWith(cut)).toBe(true);
    expect(assembleContext(tok, docs, 0)).toBe('');
  });

  it('never cuts the prompt, whatever the budget', () => {
    const prompt = 'Subject: pharmacy pills cheap and a long tail of words that alone exceed the budget\nAnswer:';
    for (const maxLength of [4, 16, 64, 256]) {
      const out = augmentPrompt(tok, augmentation({ maxLength }), prompt);
      expect(out.endsWith(prompt)).toBe(true);
      expect(count(out.slice(0, -prompt.length))).toBeLessThanOrEqual(Math.floor(0.6 * maxLength));
    }
    expect(augmentPrompt(tok, augmentation({ contextShare: 0 }), prompt)).toBe(prompt);
  });

  it('checks its options', () => {
    expect(resolveRagOptions({})).toEqual({ k: 2, contextShare: 0.6 });
    expect(() => resolveRagOptions({ k: 0 })).toThrow(RagOptionsError);
    expect(() => resolveRagOptions({ k: 1.5 })).toThrow(/rag.k/);
    expect(() => resolveRagOptions({ contextShare: 1.5 })).toThrow(/rag.contextShare/);
  });

  it('augments training prompts with their neighbours but never themselves', async () => {
    const rag = augmentation({ k: 1 });
    const { records, examples } = await loadExamples(join(dir, 'train.jsonl'), tok, 256, { rag, excludeSelf: true });
    expect(records).toEqual(TRAIN);
    examples.forEach((e, i) => {
      const own = TRAIN[i] as { prompt: string; completion: string };
      const text = tok.decode(e.inputIds.slice(0, e.promptLength), { skipSpecialTokens: true });
      expect(text.endsWith(own.prompt)).toBe(true);
      expect(text.slice(0, -own.prompt.length)).not.toContain(own.prompt); // not its own record
      const best = rag.index.retrieve(own.prompt, 1, { exclude: i })[0];
      if (best) expect(text).toBe(`${best.document.prompt}${best.document.completion}\n\n${own.prompt}`);
    });
    // Validation prompts retrieve from every training record.
    const val = await loadExamples(join(dir, 'val.jsonl'), tok, 256, { rag });
    const first = tok.decode(val.examples[0]!.inputIds.slice(0, val.examples[0]!.promptLength), { skipSpecialTokens: true });
    expect(first).toBe(`${TRAIN[0]!.prompt as string} spam\n\n${VAL[0]!.prompt as string}`);
  });
});

describe('RAG in tuning jobs and bundles', () => {
  const job = (out: string, mode: 'edge_llm' | 'vanilla' | 'none', o: Partial<TuneJobOptions> = {}): TuneJobOptions => ({
    modelDir: MODEL,
    trainFile: join(dir, 'train.jsonl'),
    validationFile: join(dir, 'val.jsonl'),
    outDir: join(dir, out),
    maxLength: 64,
    rag: { k: 1 },
    ...o,
    tune: {
      mode,
      steps: 2,
      microBatch: 2,
      warmupSteps: 0,
      exitLayers: [3, 7],
      lora: { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'] },
    },
  });

  it('mode none: no training, a bundle of manifest and index that eval and infer run with retrieval', async () => {
    const out = join(dir, 'none');
    const r = await runTuning(job('none', 'none'));
    expect(r).toMatchObject({ mode: 'none', steps: 0, tokens: 0, trainExamples: 6, validationExamples: 4 });
    expect(readdirSync(out).sort()).toEqual(['edge_llm.json', 'metrics.json', RAG_INDEX_FILE]);
    const manifest = JSON.parse(readFileSync(join(out, 'edge_llm.json'), 'utf8'));
    expect(manifest).toMatchObject({ mode: 'none', rag: { k: 1, context_share: 0.6, documents: 6 }, max_length: 64, exit_layers: [7] });

    const e = run(['eval', '--model', MODEL, '--adapter', out, '--data', join(dir, 'val.jsonl'), '--json']);
    expect(e.status, e.stderr).toBe(0);
    const rep = JSON.parse(e.stdout);
    expect(rep.perExit.map((x: { layer: number }) => x.layer)).toEqual([7]);
    expect(Object.keys(rep.voted).sort()).toEqual(['confidence', 'max', 'mean', 'weighted']);
    expect(rep.perExit[0].accuracy).toBeGreaterThanOrEqual(0);
    expect(rep.voted.mean.loss).toBeCloseTo(r.validation!.voted.mean.loss, 5);

    // What eval scored are the augmented prompts: the same figures as the augmented examples in process,
    // not those of the bare prompts.
    const model = LlamaModel.load(MODEL);
    const rag = loadRagAugmentation(out, manifest)!;
    const augmented = await loadExamples(join(dir, 'val.jsonl'), tok, 64, { rag });
    const bare = await loadExamples(join(dir, 'val.jsonl'), tok, 64);
    const padId = tok.padId ?? 0;
    const withRag = evaluatePaths(model, [plainPath(model)], augmented.examples, { padId });
    const without = evaluatePaths(model, [plainPath(model)], bare.examples, { padId });
    model.dispose();
    expect(rep.perExit[0].loss).toBeCloseTo(withRag.perExit[0]!.loss, 5);
    expect(Math.abs(rep.perExit[0].loss - without.perExit[0]!.loss)).toBeGreaterThan(1e-3);
    const plain = run(['eval', '--model', MODEL, '--data', join(dir, 'val.jsonl'), '--json']);
    expect(plain.status, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout).perExit[0].loss).toBeCloseTo(without.perExit[0]!.loss, 4);

    const i = run(['infer', '--model', MODEL, '--adapter', out, '--prompt', 'Subject: zebra lottery\nAnswer:', '--labels', ' spam, ham']);
    expect(i.status, i.stderr).toBe(0);
    expect(['spam', 'ham']).toContain(JSON.parse(i.stdout).label);
  });

  it('rag + edge_llm: the bundle carries the index and its manifest field, and loads back', async () => {
    const out = join(dir, 'edge');
    const r = await runTuning(job('edge', 'edge_llm'));
    expect(r.steps).toBe(2);
    expect(existsSync(join(out, RAG_INDEX_FILE))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(out, 'edge_llm.json'), 'utf8'));
    expect(manifest.rag).toEqual({ k: 1, context_share: 0.6, documents: 6 });
    const model = LlamaModel.load(MODEL);
    const { paths, manifest: m } = loadEdgeAdapter(model, out);
    expect(paths.map((p) => p.layer)).toEqual([3, 7]);
    const rag = loadRagAugmentation(out, m)!;
    expect(rag).toMatchObject({ k: 1, contextShare: 0.6, maxLength: 64 });
    expect(rag.index.documents).toEqual(RagIndex.build(TRAIN).documents);
    // The validation figures of the run are those of its augmented prompts.
    const val = await loadExamples(join(dir, 'val.jsonl'), tok, 64, { rag });
    const again = evaluatePaths(model, paths, val.examples, { padId: tok.padId ?? 0 });
    expect(again.voted.mean.loss).toBeCloseTo(r.validation!.voted.mean.loss, 4);
    model.dispose();
  });

  it('vanilla writes edge_llm.json beside its PEFT files, and eval loads it like any bundle', async () => {
    const out = join(dir, 'vanilla');
    const r = await runTuning(job('vanilla', 'vanilla'));
    expect(readdirSync(out).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'edge_llm.json',
      'metrics.json',
      RAG_INDEX_FILE,
    ]);
    const e = run(['eval', '--model', MODEL, '--adapter', out, '--data', join(dir, 'val.jsonl'), '--json']);
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).perExit[0].loss).toBeCloseTo(r.validation!.perExit[0]!.loss, 4);
  });

  it('refuses compression without tuning and bad RAG options', async () => {
    await expect(runTuning(job('bad', 'none', { compression: { targetSparsity: 0.5, avgBits: 8 } }))).rejects.toThrow(TuneConfigError);
    await expect(runTuning(job('bad', 'none', { rag: { k: 0 } }))).rejects.toThrow(RagOptionsError);
    const t = run([
      'tune',
      '--model',
      MODEL,
      '--train',
      join(dir, 'train.jsonl'),
      '--out',
      join(dir, 'bad'),
      '--mode',
      'none',
      '--rag-k',
      '0',
    ]);
    expect(t.status).toBe(1);
    expect(t.stderr.trim().split('\n').at(-1)).toBe('edgetune-engine: RagOptionsError: rag.k must be an integer >= 1, got 0');
  });
});
