// The engine CLI as a user runs it: tune with a progress bar, eval, infer with voting, usage errors.
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
});
