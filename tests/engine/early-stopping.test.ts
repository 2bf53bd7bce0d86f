// In-loop validation: improvement test, patience under the sequential schedule, best-on-validation weights,
// time budget, and exact resume of the curve, the counter and the best weights.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../packages/engine/src/backend/index.js';
import { LlamaModel } from '../../packages/engine/src/model/llama.js';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/index.js';
import { evalEveryOf, loadExamples, runTuning, TuneConfigError, type TuneJobOptions } from '../../packages/engine/src/tune/run.js';
import { defaultEvalEvery, isImprovement } from '../../packages/engine/src/tune/early-stopping.js';
import { loadEdgeAdapter } from '../../packages/engine/src/tune/artifacts.js';
import { chooseRule, evaluatePaths } from '../../packages/engine/src/infer/evaluate.js';
import { writeToyTask } from '../helpers/tiny-model.js';
import { REPO_ROOT } from './helpers.js';

const MODEL = join(REPO_ROOT, 'models', 'edgetune-tiny-llama');
let dir: string;

/** A small edge_llm job on the tiny model: 2 exits, rank-4 LoRA on the attention projections. */
const job = (out: string, o: Partial<TuneJobOptions> = {}, tune: TuneJobOptions['tune'] = {}): TuneJobOptions => ({
  modelDir: MODEL,
  trainFile: join(dir, 'train.jsonl'),
  validationFile: join(dir, 'val.jsonl'),
  outDir: join(dir, out),
  maxLength: 32,
  ...o,
  tune: {
    steps: 12,
    microBatch: 4,
    lr: 1e-2,
    warmupSteps: 0,
    exitLayers: [3, 7],
    schedule: 'round_robin',
    headRank: 4,
    lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] },
    ...tune,
  },
});

beforeAll(async () => {
  await initBackend({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'edgetune-es-'));
  writeToyTask(join(dir, 'train.jsonl'), 32, 1);
  writeToyTask(join(dir, 'val.jsonl'), 12, 2);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('improvement and options', () => {
  it('accuracy must rise and loss must fall by at least minDelta; ties never improve', () => {
    expect(isImprovement('accuracy', 0.5, null, 0.1)).toBe(true);
    expect(isImprovement('accuracy', 0.6, 0.5, 0)).toBe(true);
    expect(isImprovement('accuracy', 0.5, 0.5, 0)).toBe(false);
    expect(isImprovement('accuracy', 0.55, 0.5, 0.1)).toBe(false);
    expect(isImprovement('accuracy', 0.4, 0.5, 0)).toBe(false);
    expect(isImprovement('loss', 0.9, 1, 0)).toBe(true);
    expect(isImprovement('loss', 1.1, 1, 0)).toBe(false);
    expect(isImprovement('loss', 0.95, 1, 0.1)).toBe(false);
    expect(isImprovement('loss', 0.85, 1, 0.1)).toBe(true);
  });

  it('evaluates every ~steps/20 by default when stopping rules are set, and refuses bad or validation-less settings', () => {
    const v = { validationFile: 'val.jsonl' };
    expect(defaultEvalEvery(200)).toBe(10);
    expect(defaultEvalEvery(8)).toBe(1);
    expect(evalEveryOf(v, 200)).toBe(0);
    expect(evalEveryOf({ ...v, timeBudgetMs: 1000 }, 200)).toBe(10);
    expect(evalEveryOf({ ...v, earlyStopping: { patience: 2, minDelta: 0 } }, 100)).toBe(5);
    expect(evalEveryOf({ ...v, evalEvery: 3 }, 100)).toBe(3);
    expect(evalEveryOf({ timeBudgetMs: 1000 }, 100)).toBe(0);
    expect(() => evalEveryOf({ earlyStopping: { patience: 2, minDelta: 0 } }, 100)).toThrow(/validation file/);
    expect(() => evalEveryOf({ evalEvery: 2 }, 100)).toThrow(TuneConfigError);
    expect(() => evalEveryOf({ ...v, earlyStopping: { patience: 0, minDelta: 0 } }, 100)).toThrow(/patience/);
    expect(() => evalEveryOf({ ...v, earlyStopping: { patience: 1, minDelta: -1 } }, 100)).toThrow(/minDelta/);
    expect(() => evalEveryOf({ ...v, evalEvery: 0 }, 100)).toThrow(/evalEvery/);
    expect(() => evalEveryOf({ ...v, timeBudgetMs: 0 }, 100)).toThrow(/timeBudgetMs/);
  });
});

describe('runTuning with in-loop validation', () => {
  it('sequential schedule: patience counts only once every window has trained', async () => {
    // lr 0: the weights never change, so every point ties. 2 windows x 4 steps: window 1 first trains at
    // step 5, so points 1-4 are on the curve but neither best nor counted; 5 is the best, 6 and 7 exhaust
    // the patience of 2.
    const seen: number[] = [];
    const r = await runTuning(
      job(
        'seq',
        { evalEvery: 1, earlyStopping: { patience: 2, minDelta: 0 }, onEval: (p) => void seen.push(p.step) },
        {
          steps: 8,
          lr: 0,
          schedule: 'sequential',
        },
      ),
    );
    expect(r.stoppedBy).toBe('early_stopping');
    expect(r.steps).toBe(7);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(r.validationCurve.map((p) => p.step)).toEqual(seen);
    expect(r.bestStep).toBe(5);
    expect(r.validationCurve.every((p) => p.metric === 'accuracy' && p.value === p.accuracy)).toBe(true);
  });

  it('stops early and saves the best point: the saved bundle reproduces its metric', async () => {
    // minDelta 1 (a whole accuracy): no point after the first can improve, so the run stops after
    // `patience` more evaluations while the weights go on changing.
    const r = await runTuning(job('es', { evalEvery: 2, earlyStopping: { patience: 2, minDelta: 1 } }));
    expect(r.stoppedBy).toBe('early_stopping');
    expect(r.validationCurve.map((p) => p.step)).toEqual([2, 4, 6]);
    expect(r.steps).toBe(6);
    expect(r.bestStep).toBe(2);
    const best = r.validationCurve[0];
    expect(r.validationCurve[2].loss).not.toBe(best.loss);
    // The final evaluation and the saved adapter are the best point's weights, not the last step's.
    expect(r.validation!.voted[r.votingRule!].loss).toBeCloseTo(best.loss, 5);
    const model = LlamaModel.load(MODEL);
    const { paths } = loadEdgeAdapter(model, join(dir, 'es'));
    const tok = await loadTokenizer(MODEL);
    const { examples } = await loadExamples(join(dir, 'val.jsonl'), tok, 32);
    const again = evaluatePaths(model, paths, examples, { padId: tok.padId ?? 0, classTokens: r.validation!.classTokens });
    expect(again.voted[chooseRule(again)].accuracy).toBe(best.accuracy);
    expect(again.voted[chooseRule(again)].loss).toBeCloseTo(best.loss, 5);
    model.dispose();
  });

  it('a time budget stops the run between steps', async () => {
    const r = await runTuning(job('budget', { timeBudgetMs: 1 }));
    expect(r.stoppedBy).toBe('time_budget');
    expect(r.steps).toBeLessThan(12);
    // The last step trained is evaluated; after one step of round_robin window 1 has not trained, so the
    // point is not eligible as best and the weights stay the last step's.
    expect(r.validationCurve.map((p) => p.step)).toEqual([r.steps]);
    expect(r.bestStep).toBeNull();
    const vanilla = await runTuning(job('budget-vanilla', { timeBudgetMs: 1 }, { mode: 'vanilla' }));
    expect(vanilla.stoppedBy).toBe('time_budget');
    expect(vanilla.bestStep).toBe(vanilla.steps);
  });

  it('resumed from a checkpoint mid-run, it ends with the same curve, best step and saved adapter bytes', async () => {
    const opts = { evalEvery: 2, earlyStopping: { patience: 2, minDelta: 0 } };
    const full = await runTuning(job('full', opts));
    const ctrl = new AbortController();
    await expect(
      runTuning(
        job('resumed', {
          ...opts,
          shouldCheckpoint: (s) => s === 5,
          onStep: (s) => {
            if (s.step === 5) ctrl.abort();
          },
          signal: ctrl.signal,
        }),
      ),
    ).rejects.toThrow(/aborted/);
    const resumed = await runTuning(job('resumed', { ...opts, resume: true }));
    const curve = (r: typeof full) => r.validationCurve.map(({ elapsedMs, ...p }) => p);
    expect(curve(resumed)).toEqual(curve(full));
    expect(resumed.bestStep).toBe(full.bestStep);
    expect(resumed.stoppedBy).toBe(full.stoppedBy);
    expect(resumed.steps).toBe(full.steps);
    const bytes = (out: string) => readFileSync(join(dir, out, 'edge_llm.safetensors'));
    expect(bytes('resumed').equals(bytes('full'))).toBe(true);
  });
});

describe('edgetune-engine tune', () => {
  it('prints the validation points and the stop reason, and refuses a min delta without patience', () => {
    const cli = join(REPO_ROOT, 'packages', 'engine', 'dist', 'cli.js');
    const run = (args: string[]) => spawnSync(process.execPath, [cli, 'tune', ...args], { encoding: 'utf8' });
    const data = ['--model', MODEL, '--train', join(dir, 'train.jsonl'), '--out', join(dir, 'cli')];
    const t = run([
      ...data,
      ...['--val', join(dir, 'val.jsonl'), '--steps', '8', '--batch', '4', '--max-length', '32', '--exit-layers', '3,7'],
      ...['--schedule', 'round_robin', '--lora-r', '4', '--head-rank', '4', '--warmup', '0', '--lr', '1e-2'],
      ...['--eval-every', '2', '--early-stopping-patience', '1', '--early-stopping-min-delta', '1'],
    ]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/validation step 2: accuracy \d+\.\d+%, loss \d+\.\d+/);
    expect(t.stderr).toMatch(/stopped by early stopping after 4 steps; saved the best validation point's weights \(step 2\)/);
    expect(JSON.parse(readFileSync(join(dir, 'cli', 'metrics.json'), 'utf8')).stoppedBy).toBe('early_stopping');
    const bad = run([...data, '--early-stopping-min-delta', '0.01']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--early-stopping-min-delta needs --early-stopping-patience/);
  });
});
