// The engine CLI as a user runs it: tune with a progress bar, eval, infer with voting, plan, usage errors and
// one-line errors, the backend line only with --verbose, the label warning.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createTinyModel, writeToyTask } from '../helpers/tiny-model.js';
import { REPO_ROOT } from './helpers.js';
import { initBackend } from '../../packages/engine/src/backend/index.js';

const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
let dir: string;

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-cli-'));
  createTinyModel(join(dir, 'model'));
  writeToyTask(join(dir, 'train.jsonl'), 40, 1);
  writeToyTask(join(dir, 'val.jsonl'), 16, 2);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('edgetune-engine CLI', () => {
  it('tunes with progress on stderr, then evaluates per exit and voted, and infers with voting', () => {
    const out = join(dir, 'run');
    const t = run([
      'tune',
      '--model',
      join(dir, 'model'),
      '--train',
      join(dir, 'train.jsonl'),
      '--val',
      join(dir, 'val.jsonl'),
      '--out',
      out,
      '--steps',
      '8',
      '--batch',
      '4',
      '--max-length',
      '64',
      '--schedule',
      'round_robin',
      '--lora-r',
      '4',
    ]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/tune \[#+\] 8\/8 +loss \d+\.\d+ +\d+ tok\/s +ETA/);
    expect(t.stdout).toMatch(/exit 3 /);
    expect(t.stdout).toMatch(/vote max/);
    expect(existsSync(join(out, 'edge_llm.json'))).toBe(true);
    const metrics = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.steps).toBe(8);

    const e = run(['eval', '--model', join(dir, 'model'), '--adapter', out, '--data', join(dir, 'val.jsonl'), '--json']);
    expect(e.status, e.stderr).toBe(0);
    const rep = JSON.parse(e.stdout);
    expect(rep.perExit.map((x: { layer: number }) => x.layer)).toEqual([0, 1, 2, 3]);
    expect(Object.keys(rep.voted).sort()).toEqual(['confidence', 'max', 'mean', 'weighted']);
    expect(rep.votingRule).toBe(JSON.parse(readFileSync(join(out, 'edge_llm.json'), 'utf8')).voting_rule);
    // Same weights, same data: eval must reproduce the validation metrics of the tuning run.
    expect(rep.voted.mean.loss).toBeCloseTo(metrics.validation.voted.mean.loss, 5);

    const i = run([
      'infer',
      '--model',
      join(dir, 'model'),
      '--adapter',
      out,
      '--prompt',
      'FREE MONEY: whale ship\nAnswer:',
      '--labels',
      ' spam, ham',
    ]);
    expect(i.status, i.stderr).toBe(0);
    const ans = JSON.parse(i.stdout);
    expect(['spam', 'ham']).toContain(ans.label);
    expect(ans.per_exit).toHaveLength(4);
    expect(ans.probabilities.spam + ans.probabilities.ham).toBeCloseTo(1, 5);

    const g = run(['infer', '--model', join(dir, 'model'), '--adapter', out, '--prompt', 'The whale', '--max-new-tokens', '5']);
    expect(g.status, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout).tokens).toBeLessThanOrEqual(5);
  });

  it('names the bad line of a dataset and exits 1', () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"prompt":"a","completion":"b"}\n{"prompt": 3}\n');
    const r = run(['tune', '--model', join(dir, 'model'), '--train', bad, '--out', join(dir, 'x'), '--steps', '1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/line 2/);
  });

  it('rejects unknown options and bad values with usage (exit 2)', () => {
    const r = run(['tune', '--model', join(dir, 'model'), '--bogus', '1']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: edgetune-engine/);
    const s = run([
      'tune',
      '--model',
      join(dir, 'model'),
      '--train',
      join(dir, 'train.jsonl'),
      '--out',
      join(dir, 'y'),
      '--schedule',
      'zigzag',
    ]);
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(/--schedule must be one of sequential, round_robin, random/);
    // Datasets are the lab's: the engine names the command to use.
    const d = run(['data', 'spam-assassin', '--out', join(dir, 'z')]);
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(/unknown command "data"/);
    expect(d.stderr).not.toMatch(/\[edgetune\] backend=/); // refused before the backend starts
    expect(d.stderr).toMatch(/edgetune-lab --help/);
  });

  it('suggests the nearest option or command for a typo, in one line, and exits 2', () => {
    const r = run(['tune', '--model', join(dir, 'model'), '--stpes', '3']);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('edgetune-engine: unknown option --stpes (did you mean --steps?)');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const c = run(['tnue', '--steps', '3']);
    expect(c.status).toBe(2);
    expect(c.stderr.split('\n')[0]).toBe('edgetune-engine: unknown command "tnue" (did you mean tune?)');
    const h = run(['plan', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/^usage: edgetune-engine <command>/);
  });

  it('reports a missing model, a missing file and a file that is not JSON in one line, without a stack trace (exit 1)', () => {
    const notJson = join(dir, 'ids.json');
    writeFileSync(notJson, '{"input_ids": [[1, 2]\n');
    const cases: [string[], RegExp][] = [
      [['eval', '--model', join(dir, 'nope'), '--data', join(dir, 'val.jsonl')], /no config\.json in .*nope/],
      [['eval', '--model', join(dir, 'model'), '--data', join(dir, 'missing.jsonl')], /no such file.*missing\.jsonl/],
      [['logits', '--model', join(dir, 'model'), '--ids', notJson], /--ids .*ids\.json: not JSON/],
      [['logits', '--model', join(dir, 'model'), '--ids', join(dir, 'missing.json')], /--ids .*missing\.json: no such file/],
    ];
    for (const [args, msg] of cases) {
      const r = run(args);
      expect(r.status, r.stderr).toBe(1);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^edgetune-engine: /);
      expect(lines[0]).toMatch(msg);
    }
  });

  it('prints the backend line only with --verbose', () => {
    const quiet = run(['backend']);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toMatch(/\[edgetune\] backend=/);
    expect(JSON.parse(quiet.stdout).backend).toBeTruthy();
    const verbose = run(['backend', '--verbose']);
    expect(verbose.status, verbose.stderr).toBe(0);
    expect(verbose.stderr).toMatch(/^\[edgetune\] backend=\w+ matmul=/m);
  });

  it("plans: a readable summary with the forecast against the budget, and --json as the API's snake_case plan", () => {
    const args = ['plan', '--model', join(dir, 'model'), '--memory-budget-mb', '1024', '--steps', '50', '--max-length', '64'];
    const j = run([...args, '--json']);
    expect(j.status, j.stderr).toBe(0);
    const p = JSON.parse(j.stdout);
    const keys = (x: unknown): string[] =>
      x && typeof x === 'object' && !Array.isArray(x) ? Object.entries(x).flatMap(([k, v]) => [k, ...keys(v)]) : [];
    expect(keys(p).filter((k) => !/^[a-z0-9_]+$/.test(k))).toEqual([]);
    expect(p).toMatchObject({ fits: true, reason: null, exit_layers: [0, 1, 2, 3], device: { memory_budget_bytes: 1024 * 2 ** 20 } });
    expect(p.forecast.peak_rss_bytes).toBeGreaterThan(0);
    const h = run(args);
    expect(h.status, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/^plan for .*: 4 layers, 50 steps of batch 8 x 64 tokens\nfits: +yes\n/);
    expect(h.stdout).toContain(`peak RSS ${Math.ceil(p.forecast.peak_rss_bytes / 2 ** 20)} MiB of a 1024 MiB budget`);
    expect(h.stdout).toMatch(/time: +\d+ ms\/step, \S+ in all/);
    expect(h.stdout).toContain('exits:   layers 0, 1, 2, 3');
    expect(h.stdout).toContain('storage: layers 0-3 f32');
  });

  it('warns when --labels lack the leading space that completions carry', () => {
    const args = ['infer', '--model', join(dir, 'model'), '--prompt', 'FREE MONEY\nAnswer:', '--labels'];
    const bare = run([...args, 'spam,ham']);
    expect(bare.status, bare.stderr).toBe(0);
    expect(bare.stderr).toMatch(/warning: --labels: "spam", "ham" have no leading space.*--labels " spam, ham"/);
    expect(JSON.parse(bare.stdout).probabilities).toHaveProperty('spam');
    const spaced = run([...args, ' spam, ham']);
    expect(spaced.status, spaced.stderr).toBe(0);
    expect(spaced.stderr).not.toMatch(/warning/);
  });
});
