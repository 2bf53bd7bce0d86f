// `edgetune-engine advise --mode measure` as a user runs it (built CLI, child process): rules fitted to synthetic
// guidelines-bench rows, the project's tiny model, a toy two-class task and a budget of a few seconds; the top 3
// candidates are tuned here as probes and ranked by what they measured, as the service ranks its probe jobs.
import { syntheticRows } from '../helpers/advisor-rows.js';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fitAdvisorRules, type GuidelinesRun } from '../../packages/core/src/advisor/rules.js';
import { compareMeasured } from '../../packages/core/src/advisor/measure.js';
import type { LocalMeasurement } from '../../packages/engine/src/schedule/advise.js';
import { writeToyTask } from '../helpers/tiny-model.js';
import { REPO_ROOT } from './helpers.js';

const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
const model = join(REPO_ROOT, 'models', 'edgetune-tiny-llama');
const run = (args: string[]) => spawnSync(process.execPath, [cli, 'advise', ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
let dir: string;

const rows = (): GuidelinesRun[] =>
  syntheticRows({
    model: 'models/edgetune-tiny-llama',
    task: 'spam',
    gains: { edge_llm: 0.6, lora: 0.4, rag: 0.2 },
    peaks: [4, 8],
    modelParams: 4_000_000,
  });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgetune-advise-'));
  writeFileSync(join(dir, 'rules.json'), JSON.stringify(fitAdvisorRules(rows(), 'synthetic rows')));
  writeToyTask(join(dir, 'train.jsonl'), 24, 1);
  writeToyTask(join(dir, 'val.jsonl'), 12, 2);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const common = () => ['--train', join(dir, 'train.jsonl'), '--models', model, '--rules', join(dir, 'rules.json'), '--threads', '2'];

describe('edgetune-engine advise --mode measure', () => {
  it('refuses measure without --val in one line, as a usage error', () => {
    const r = run([...common(), '--mode', 'measure', '--out', join(dir, 'no-val')]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('edgetune-engine:'))).toEqual([
      'edgetune-engine: --mode measure ranks probes by their validation metric: give --val',
    ]);
    expect(existsSync(join(dir, 'no-val'))).toBe(false);
  });

  it('tunes the top 3 candidates as probes within their budget shares and ranks them by measured metric', () => {
    const out = join(dir, 'measure');
    const r = run([...common(), '--val', join(dir, 'val.jsonl'), '--mode', 'measure', '--out', out, '--time-budget-s', '6', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout) as LocalMeasurement;
    expect(m.candidates.length).toBeGreaterThanOrEqual(3);
    expect(m.probes.map((p) => p.candidate).sort()).toEqual([0, 1, 2]);
    for (const p of m.probes) {
      expect(p.error, JSON.stringify(p)).toBeNull();
      expect(p.status).toBe('succeeded');
      expect(p.time_budget_s).toBeCloseTo(2);
      // a probe stops at its step cap, on its time share or early; it never runs past its cap
      expect(['max_steps', 'time_budget', 'early_stopping']).toContain(p.stopped_by);
      if (p.max_steps !== null) expect(p.steps).toBeLessThanOrEqual(p.max_steps);
      expect(existsSync(join(p.out_dir, 'metrics.json'))).toBe(true);
    }
    // best first by the metrics the probes report, and the best candidate is the first probe's
    const measured = m.probes.map((p) => p.measured!);
    expect(measured.every(Boolean)).toBe(true);
    for (let k = 1; k < measured.length; k++) expect(compareMeasured(measured[k - 1], measured[k])).toBeLessThanOrEqual(0);
    expect(m.best_candidate).toBe(m.probes[0].candidate);
    expect(m.status).toBe('succeeded');
    const file = JSON.parse(readFileSync(join(out, 'recommendation.json'), 'utf8')) as LocalMeasurement;
    expect(file.probes).toEqual(m.probes);
    expect(file.candidates).toEqual(m.candidates);
  }, 60_000);
});
