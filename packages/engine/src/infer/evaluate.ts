/**
 * Evaluation of exit paths and their vote: accuracy on classification-style data (label scoring on the
 * first completion token, as QLoRA and Edge-LLM (Yu et al., DAC 2024) score MMLU letters) and perplexity on
 * the completion tokens.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaModel } from '../model/llama.js';
import type { Example } from '../tune/batches.js';
import { makeBatch } from '../tune/batches.js';
import { IGNORE_INDEX } from '@edgetune/core';
import {
  argmax,
  combineExits,
  exitProbabilities,
  fitExitWeights,
  pathWeights,
  VOTING_RULES,
  type ExitPath,
  type VotingRule,
} from './voting.js';

/** Metrics of one path or one vote. accuracy is null when the data is not classification-like. */
export interface PathMetrics {
  /** fraction correct in [0, 1] */
  accuracy: number | null;
  /** mean NLL per completion token, nats */
  loss: number;
  perplexity: number;
}

export interface EvalReport {
  examples: number;
  /** completion tokens scored */
  tokens: number;
  perExit: (PathMetrics & { layer: number })[];
  voted: Record<VotingRule, PathMetrics>;
  /** the class label token ids used for scoring (first completion token of each class) */
  classTokens: number[] | null;
  /** per-example predicted class token for each rule (for confusion matrices) */
  predictions?: Record<VotingRule, number[]>;
  /** the `weighted` vote's per-exit weights: the paths' own, or fitted on these examples when they had none */
  exitWeights: number[];
}

/** Error for data that cannot be scored. */
export class EvaluationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EvaluationError';
  }
}

/** First labelled position of an example (the first completion token), or -1. */
export function firstTarget(e: Example): number {
  return e.labels.findIndex((y, t) => t > 0 && y !== IGNORE_INDEX);
}

/**
 * Distinct first completion tokens across examples: the candidate classes for label scoring.
 * Returns null when there are more than `maxClasses` (free-form generation data).
 */
export function classTokensOf(examples: Example[], maxClasses = 32): number[] | null {
  const s = new Set<number>();
  for (const e of examples) {
    const t = firstTarget(e);
    if (t > 0) s.add(e.labels[t]);
    if (s.size > maxClasses) return null;
  }
  return s.size >= 2 ? [...s].sort((a, b) => a - b) : null;
}

/**
 * Evaluates every path and every voting rule on examples. The `weighted` rule uses the paths' weights
 * when all have one (an adapter's, fitted on its validation data); otherwise it fits them on these
 * examples ({@link fitExitWeights}) and reports them in `exitWeights` (what tuning does on validation).
 * @param classTokens candidate first tokens for accuracy; default {@link classTokensOf}.
 * @param batchSize examples per forward.
 */
export function evaluatePaths(
  model: LlamaModel,
  paths: ExitPath[],
  examples: Example[],
  opts: { batchSize?: number; classTokens?: number[] | null; padId?: number; keepPredictions?: boolean } = {},
): EvalReport {
  const bs = opts.batchSize ?? 16;
  const classTokens = opts.classTokens === undefined ? classTokensOf(examples) : opts.classTokens;
  const K = paths.length;
  const nll = new Float64Array(K),
    nllVote: Record<string, number> = {};
  const correct = new Float64Array(K),
    correctVote: Record<string, number> = {};
  const predictions = Object.fromEntries(VOTING_RULES.map((r) => [r, [] as number[]])) as Record<VotingRule, number[]>;
  for (const r of VOTING_RULES) {
    nllVote[r] = 0;
    correctVote[r] = 0;
  }
  // For the weighted vote, computed after the pass: each exit's probability of every scored target
  // ([tokens][K]) and of every class at each first target ([scored][K][classes]).
  const targetP: Float64Array[] = [],
    classP: { y: number; p: number[][] }[] = [];
  let tokens = 0,
    scored = 0;
  for (let i = 0; i < examples.length; i += bs) {
    const chunk = examples.slice(i, i + bs);
    const batch = makeBatch(chunk, opts.padId ?? 0);
    const T = batch.ids[0].length;
    const rows: number[] = [],
      targets: number[] = [],
      firstRow: number[] = [];
    chunk.forEach((e, b) => {
      const f = firstTarget(e);
      for (let t = 1; t < e.labels.length; t++) {
        if (e.labels[t] === IGNORE_INDEX) continue;
        if (t === f) firstRow.push(rows.length);
        rows.push(b * T + t - 1);
        targets.push(e.labels[t]);
      }
    });
    if (!rows.length) continue;
    tokens += rows.length;
    const probs = exitProbabilities(model, paths, batch.ids, Int32Array.from(rows));
    const tgtIdx = tf.tensor2d(
      targets.map((y, r) => [r, y]),
      [targets.length, 2],
      'int32',
    );
    const score = (p: tf.Tensor2D) => {
      const pt = tf.tidy(() => tf.gatherND(p, tgtIdx).dataSync() as Float32Array);
      let sum = 0;
      for (const x of pt) sum -= Math.log(x + 1e-12);
      const sub = classTokens
        ? tf.tidy(
            () => tf.gather(tf.gather(p, tf.tensor1d(firstRow, 'int32')), tf.tensor1d(classTokens, 'int32'), 1).arraySync() as number[][],
          )
        : [];
      const preds = sub.map((row) => classTokens![argmax(row)]);
      const right = preds.filter((c, j) => c === targets[firstRow[j]]).length;
      return { sum, right, preds, pt, sub };
    };
    const per = probs.map((p, k) => {
      const s = score(p);
      nll[k] += s.sum;
      correct[k] += s.right;
      return s;
    });
    for (let r = 0; r < rows.length; r++) targetP.push(Float64Array.from(per, (s) => s.pt[r]));
    if (classTokens) firstRow.forEach((row, j) => classP.push({ y: targets[row], p: per.map((s) => s.sub[j]) }));
    for (const r of VOTING_RULES) {
      if (r === 'weighted') continue;
      const v = combineExits(probs, r);
      const s = score(v);
      nllVote[r] += s.sum;
      correctVote[r] += s.right;
      if (opts.keepPredictions) predictions[r].push(...s.preds);
      v.dispose();
    }
    scored += firstRow.length;
    tf.dispose([...probs, tgtIdx]);
  }
  const exitWeights = pathWeights(paths) ?? (targetP.length ? fitExitWeights(targetP) : new Array(K).fill(1 / K));
  for (const row of targetP) nllVote.weighted -= Math.log(row.reduce((a, x, k) => a + exitWeights[k] * x, 0) + 1e-12);
  for (const { y, p } of classP) {
    const mix = classTokens!.map((_, c) => p.reduce((a, row, k) => a + exitWeights[k] * row[c], 0));
    const pred = classTokens![argmax(mix)];
    if (pred === y) correctVote.weighted++;
    if (opts.keepPredictions) predictions.weighted.push(pred);
  }
  const metrics = (n: number, c: number): PathMetrics => ({
    accuracy: classTokens && scored ? c / scored : null,
    loss: n / Math.max(1, tokens),
    perplexity: Math.exp(n / Math.max(1, tokens)),
  });
  return {
    examples: examples.length,
    tokens,
    perExit: paths.map((p, k) => ({ layer: p.layer, ...metrics(nll[k], correct[k]) })),
    voted: Object.fromEntries(VOTING_RULES.map((r) => [r, metrics(nllVote[r], correctVote[r])])) as Record<VotingRule, PathMetrics>,
    classTokens,
    predictions: opts.keepPredictions ? predictions : undefined,
    exitWeights,
  };
}

/**
 * Picks the voting rule with the best validation accuracy (or lowest loss when the data has no
 * classes); ties go to the earlier rule in `max`, `mean`, `confidence`, `weighted` (the weighted vote's
 * weights are fitted on the same validation data, so it must win outright).
 */
export function chooseRule(report: EvalReport): VotingRule {
  let best: VotingRule = VOTING_RULES[0];
  for (const r of VOTING_RULES) {
    const a = report.voted[r],
      b = report.voted[best];
    const better =
      a.accuracy !== null && b.accuracy !== null
        ? a.accuracy > b.accuracy + 1e-12 || (Math.abs(a.accuracy - b.accuracy) <= 1e-12 && a.loss < b.loss - 1e-12)
        : a.loss < b.loss - 1e-12;
    if (better) best = r;
  }
  return best;
}
