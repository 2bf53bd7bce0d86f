/**
 * Validation during tuning: the validation curve, early stopping with patience, a time budget and the
 * best-on-validation weights (Hugging Face transformers' `EarlyStoppingCallback` with
 * `early_stopping_patience` / `early_stopping_threshold` and `load_best_model_at_end`). With little data
 * the validation metric peaks early and further steps only spend the device's time (Qin et al., "Empowering
 * Large Language Models for Personal On-Device Fine-Tuning", arXiv 2406.03777).
 *
 * Windows that have not trained yet (the `sequential` schedule's later exits early on) make the vote of all
 * exits a poor guide, so a point only competes for the best, and only counts towards patience, once every
 * window has trained at least one step ({@link ValidationMonitor.eligible}); earlier points are still on the curve.
 *
 * The evaluation loop lives here, not in the trainer (which only trains).
 */
import * as tf from '@tensorflow/tfjs-core';
import { chooseRule, classTokensOf, evaluatePaths } from '../infer/evaluate.js';
import type { ExitPath } from '../infer/voting.js';
import { pathsOf, plainPath } from './artifacts.js';
import type { Example } from './batches.js';
import type { CallbackStateDict } from './checkpoint.js';
import type { AdaptiveTrainer, HostTensor } from './trainer.js';
import { AUTO_EVALUATIONS } from '@edgetune/core';

/** The validation metric: voted accuracy (higher is better) or voted loss in nats per token (lower is better). */
export type ValidationMetric = 'accuracy' | 'loss';

/** One in-loop validation evaluation. */
export interface ValidationPoint {
  /** optimizer steps done when evaluated */
  step: number;
  /** tuning wall time when the evaluation started: step time plus earlier in-loop evaluations, ms */
  elapsedMs: number;
  metric: ValidationMetric;
  /** the metric's value: `accuracy` or `loss` below */
  value: number;
  /** voted accuracy in [0, 1] under the rule {@link chooseRule} picks; null for data that is not classification-like */
  accuracy: number | null;
  /** voted loss under that rule, nats per completion token */
  loss: number;
}

/** Early stopping: stop after `patience` evaluations in a row without an improvement of at least `minDelta`. */
export interface EarlyStoppingOptions {
  /** evaluations without improvement before stopping (HF `early_stopping_patience`), a positive integer */
  patience: number;
  /** smallest change of the metric that counts as an improvement, absolute (HF `early_stopping_threshold`), >= 0 */
  minDelta: number;
}

/** Why training ended. */
export type StopReason = 'max_steps' | 'early_stopping' | 'time_budget';

/**
 * True when `value` improves on `best` by at least `minDelta` in the metric's direction (accuracy up, loss
 * down); ties never improve, and any value improves on no best (null).
 */
export function isImprovement(metric: ValidationMetric, value: number, best: number | null, minDelta: number): boolean {
  if (best === null) return true;
  const gain = metric === 'accuracy' ? value - best : best - value;
  return gain > 0 && gain >= minDelta;
}

/**
 * Default steps between in-loop evaluations (the job vocabulary's `eval_steps: 'auto'`): about twenty
 * points over the run, max(1, round(steps / 20)).
 */
export function defaultEvalEvery(steps: number): number {
  return Math.max(1, Math.round(steps / AUTO_EVALUATIONS));
}

/** The exit paths a trainer's live variables define (no copies): low-rank heads stay factored, unmaterialised. */
export function trainerPaths(trainer: AdaptiveTrainer): ExitPath[] {
  return trainer.opts.mode === 'vanilla' ? [plainPath(trainer.model)] : pathsOf(trainer.exits, trainer.opts.prefix);
}

/** What a {@link ValidationMonitor} needs besides the trainer. */
export interface ValidationMonitorOptions {
  /** validation examples (non-empty when evalEvery > 0) */
  examples: Example[];
  /** optimizer steps between evaluations; 0 = no in-loop evaluation (the budget still applies) */
  evalEvery: number;
  earlyStopping?: EarlyStoppingOptions;
  /** stop once tuning wall time (steps + in-loop evaluations) reaches this, ms */
  timeBudgetMs?: number;
  /** examples per evaluation forward */
  batchSize: number;
  padId: number;
  onEval?: (p: ValidationPoint) => void | Promise<void>;
}

/**
 * Evaluates a trainer on validation data as it trains, keeps the curve, the patience counter and a host
 * copy of the best point's trainable variables, and says when to stop. Its state (curve, counter, best
 * copy, evaluation time) travels in the trainer's checkpoint ({@link stateDict}), so a resumed run ends
 * with the same best step and weights as an uninterrupted one.
 */
export class ValidationMonitor {
  curve: ValidationPoint[] = [];
  bestStep: number | null = null;
  /** eligible evaluations in a row without improvement since the best */
  badEvals = 0;
  /** wall time spent in in-loop evaluations, ms */
  evalMs = 0;
  /** the best point's trainable variables by stable name (float32 copies in host memory) */
  private best: Map<string, HostTensor> | null = null;
  private readonly classTokens: number[] | null;

  constructor(
    readonly trainer: AdaptiveTrainer,
    readonly o: ValidationMonitorOptions,
  ) {
    this.classTokens = o.evalEvery > 0 ? classTokensOf(o.examples) : null;
  }

  /** Tuning wall time so far: the trainer's step time plus in-loop evaluations, ms. */
  get elapsedMs(): number {
    return this.trainer.state.elapsedMs + this.evalMs;
  }

  /** The best eligible point, or null. */
  get bestPoint(): ValidationPoint | null {
    return this.curve.find((p) => p.step === this.bestStep) ?? null;
  }

  /** True once every window has trained at least one step: before that, later exits are untrained and the vote misleads. */
  get eligible(): boolean {
    return this.trainer.state.windowSteps.every((n) => n > 0);
  }

  /**
   * Call after each optimizer step. Evaluates when due (every `evalEvery` steps and at the last step the run
   * trains), records the point, copies the variables on improvement, and says whether training must stop
   * now (null: go on; training that has reached its steps gets null).
   */
  async afterStep(): Promise<Exclude<StopReason, 'max_steps'> | null> {
    const { step } = this.trainer.state;
    const overBudget = () => this.o.timeBudgetMs !== undefined && this.elapsedMs >= this.o.timeBudgetMs;
    const lastStep = this.trainer.done || overBudget();
    if (this.o.evalEvery > 0 && (step % this.o.evalEvery === 0 || lastStep) && this.curve.at(-1)?.step !== step) await this.evaluate();
    if (this.trainer.done) return null;
    if (this.o.earlyStopping && this.badEvals >= this.o.earlyStopping.patience) return 'early_stopping';
    return overBudget() ? 'time_budget' : null;
  }

  /** Evaluates the current variables on the validation examples and records the point. */
  async evaluate(): Promise<ValidationPoint> {
    const t0 = performance.now();
    const r = evaluatePaths(this.trainer.model, trainerPaths(this.trainer), this.o.examples, {
      batchSize: this.o.batchSize,
      padId: this.o.padId,
      classTokens: this.classTokens,
    });
    const voted = r.voted[chooseRule(r)];
    const metric: ValidationMetric = voted.accuracy === null ? 'loss' : 'accuracy';
    const point: ValidationPoint = {
      step: this.trainer.state.step,
      elapsedMs: this.elapsedMs,
      metric,
      value: voted.accuracy ?? voted.loss,
      accuracy: voted.accuracy,
      loss: voted.loss,
    };
    this.record(point);
    this.evalMs += performance.now() - t0;
    await this.o.onEval?.(point);
    return point;
  }

  /** Adds a point to the curve; an eligible one that improves becomes the best (variables copied), else counts towards patience. */
  private record(p: ValidationPoint): void {
    this.curve.push(p);
    if (!this.eligible) return;
    const best = this.bestPoint;
    if (isImprovement(p.metric, p.value, best?.value ?? null, this.o.earlyStopping?.minDelta ?? 0)) {
      this.bestStep = p.step;
      this.badEvals = 0;
      this.best = new Map([...this.trainedVariables()].map(([n, v]) => [n, { shape: v.shape, data: Float32Array.from(v.dataSync()) }]));
    } else this.badEvals++;
  }

  /** The variables training changes, by stable name: LoRA factors, and exit norms and heads when they train. */
  private trainedVariables(): Map<string, tf.Variable> {
    const all = this.trainer.namedVariables();
    if (this.trainer.opts.trainHeads !== false) return all;
    return new Map([...all].filter(([n]) => !n.startsWith('exits.')));
  }

  /**
   * Puts the best point's variables back into the trainer (HF `load_best_model_at_end`).
   * @returns the best step, or null when no eligible point was evaluated (the variables stay as they are)
   */
  restoreBest(): number | null {
    if (!this.best) return null;
    const vars = this.trainedVariables();
    for (const [name, t] of this.best) {
      const v = vars.get(name);
      if (!v) throw new Error(`best weights hold ${name}, which the trainer lacks`);
      tf.tidy(() => v.assign(tf.tensor(t.data, t.shape)));
    }
    return this.bestStep;
  }

  /** The monitor's checkpoint state: curve, best step, counter, evaluation time; the best copy as `best.<name>` tensors. */
  stateDict(): CallbackStateDict {
    const tensors = new Map<string, HostTensor>();
    for (const [n, t] of this.best ?? []) tensors.set(`best.${n}`, t);
    return { state: { curve: this.curve, bestStep: this.bestStep, badEvals: this.badEvals, evalMs: this.evalMs }, tensors };
  }

  /** Restores what {@link stateDict} returned. */
  loadStateDict({ state, tensors }: CallbackStateDict): void {
    const s = state as { curve: ValidationPoint[]; bestStep: number | null; badEvals: number; evalMs: number };
    this.curve = s.curve;
    this.bestStep = s.bestStep;
    this.badEvals = s.badEvals;
    this.evalMs = s.evalMs;
    const best = new Map<string, HostTensor>();
    for (const [n, t] of tensors) if (n.startsWith('best.')) best.set(n.slice('best.'.length), t);
    this.best = best.size ? best : null;
  }
}
