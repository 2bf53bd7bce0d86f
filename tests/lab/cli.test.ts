// The lab CLI as a user runs it: dataset builders, usage errors with suggestions, the backend line only with --verbose.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from '../engine/helpers.js';

const cli = join(REPO_ROOT, 'packages', 'lab', 'dist', 'cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgetune-lab-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('edgetune-lab CLI', () => {
  it('rejects an unknown dataset with usage (exit 2)', () => {
    const d = run(['data', 'imagenet', '--out', join(dir, 'z')]);
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(/the datasets are spam-assassin, spam-assassin-3, first-names, cmudict, corpus-continuation and spam-prompt/);
    expect(d.stderr).toMatch(/usage: edgetune-lab/);
  });

  it('suggests the nearest command, dataset or option for a typo, in one line (exit 2)', () => {
    const cases: [string[], string][] = [
      [['pretrian'], 'edgetune-lab: unknown command "pretrian" (did you mean pretrain?)'],
      [
        ['data', 'spam-asassin', '--out', join(dir, 'z')],
        'edgetune-lab: data: unknown dataset "spam-asassin" (did you mean spam-assassin?);',
      ],
      [['pretrain', '--out', join(dir, 'p'), '--stesp', '3'], 'edgetune-lab: unknown option --stesp (did you mean --steps?)'],
      [['tune'], `edgetune-lab: unknown command "tune": tuning, evaluation and inference are edgetune-engine's (edgetune-engine --help)`],
    ];
    for (const [args, first] of cases) {
      const r = run(args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.split('\n')[0].startsWith(first), r.stderr).toBe(true);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('prints the backend line only with --verbose', () => {
    // bench --scale with an unknown shape: the backend starts, then the command is refused
    const args = ['bench', '--scale', '--models', 'gpt-4'];
    const quiet = run(args);
    expect(quiet.status).toBe(2);
    expect(quiet.stderr).not.toMatch(/\[edgetune\] backend=/);
    const verbose = run([...args, '--verbose']);
    expect(verbose.status).toBe(2);
    expect(verbose.stderr).toMatch(/^\[edgetune\] backend=\w+ matmul=/m);
  });

  it('bench --scale refuses a shape it does not know, naming the ones it does, before measuring anything', () => {
    const d = run(['bench', '--scale', '--models', 'smollm2-135m,gpt-4']);
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(
      /--models: unknown gpt-4 \(one of smollm2-135m, smollm2-360m, qwen2.5-0.5b, tinyllama-1.1b, llama-3.2-1b, llama-3.2-3b\)/,
    );
    expect(d.stderr).not.toMatch(/SGEMM peak/);
  });

  it('builds the corpus-continuation dataset: records of the held-out documents, never of the training ones', () => {
    const out = join(dir, 'corpus');
    const r = run(['data', 'corpus-continuation', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const counts = JSON.parse(r.stdout) as { train: number; validation: number; test: number };
    const lines = (f: string) =>
      readFileSync(join(out, f), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { prompt: string; completion: string });
    const train = lines('train.jsonl'),
      test = lines('test.jsonl');
    expect(train).toHaveLength(counts.train);
    expect(counts.train).toBeGreaterThan(10000);
    expect(test).toHaveLength(counts.test);
    const seen = new Set(train.map((x) => x.prompt));
    expect(test.some((x) => seen.has(x.prompt))).toBe(false);
  });

  it("prints the spam task's prompt for one RFC 822 mail", () => {
    const mail = join(dir, 'mail.eml');
    writeFileSync(mail, 'From: a@example.com\r\nSubject: Cheap watches\r\nContent-Type: text/plain\r\n\r\nBuy now, limited offer.\r\n');
    const r = run(['data', 'spam-prompt', '--email', mail]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Cheap watches/);
    expect(r.stdout).toMatch(/Buy now, limited offer\./);
  });
});
