/**
 * Evaluation of exit paths and their vote: accuracy on classification-style data (label scoring on the
 * first completion token, as QLoRA and Edge-LLM (Yu et al., DAC 2024) score MMLU letters), perplexity on
 * the completion tokens and, for generation tasks, exact match of the greedy generation (as SQuAD's EM,
 * Rajpurkar et al. 2016, without its normalisation beyond trimming).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaModel } from '../model/llama.js';
import type { EngineTokenizer } from '../tokenizer/index.js';
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
import { generateBatch } from './generate.js';

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
  /** exact match of greedy generation, when asked for ({@link evaluatePaths}' `generate`) */
  exactMatch?: ExactMatchReport;
}

/** Options of {@link exactMatch}. */
export interface ExactMatchOptions {
  /** decodes generated and reference ids (special tokens skipped); its eos ends a generation */
  tokenizer: Pick<EngineTokenizer, 'decode' | 'eosId'>;
  /** voting rule of the voted generation (default: `max`; in {@link evaluatePaths}, the adapter's rule if
   *  given, else {@link chooseRule} on the report) */
  rule?: VotingRule;
  /** new tokens allowed beyond each reference completion's length, tokens (default 4) */
  margin?: number;
  /** cap on new tokens per example (default: none but the reference's length + margin) */
  maxNewTokens?: number;
  /** sequences decoded at once (prompts of one token length share a batch; default 64) */
  batchSize?: number;
}

/** Exact match, fractions in [0, 1] of the examples with completion tokens. */
export interface ExactMatchReport {
  /** each exit path generating alone */
  perExit: number[];
  /** the vote over all paths with `rule` */
  voted: number;
  rule: VotingRule;
  /** examples scored */
  examples: number;
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
 * Returns null when there are more than `maxClasses` distinct first tokens or distinct completions (free-form
 * generation data: a pronunciation's first phone is no class of it), or fewer than 2 first tokens.
 */
export function classTokensOf(examples: Example[], maxClasses = 32): number[] | null {
  const s = new Set<number>();
  const completions = new Set<string>();
  for (const e of examples) {
    const t = firstTarget(e);
    if (t <= 0) continue;
    s.add(e.labels[t]);
    completions.add(
      e.labels
        .slice(t)
        .filter((y) => y !== IGNORE_INDEX)
        .join(','),
    );
    if (s.size > maxClasses || completions.size > maxClasses) return null;
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
  opts: {
    batchSize?: number;
    classTokens?: number[] | null;
    padId?: number;
    keepPredictions?: boolean;
    /** also report {@link exactMatch} (greedy generation per example: costs a decode per token) */
    generate?: ExactMatchOptions;
  } = {},
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
  const report: EvalReport = {
    examples: examples.length,
    tokens,
    perExit: paths.map((p, k) => ({ layer: p.layer, ...metrics(nll[k], correct[k]) })),
    voted: Object.fromEntries(VOTING_RULES.map((r) => [r, metrics(nllVote[r], correctVote[r])])) as Record<VotingRule, PathMetrics>,
    classTokens,
    predictions: opts.keepPredictions ? predictions : undefined,
    exitWeights,
  };
  if (opts.generate) {
    const rule = opts.generate.rule ?? (paths.length > 1 ? chooseRule(report) : 'max');
    report.exactMatch = exactMatch(model, paths, examples, { ...opts.generate, rule });
  }
  return report;
}

/**
 * Exact match of free-form generation: for each example, greedy generation from its prompt (the tokens before
 * its first completion token) with the KV cache ({@link generateBatch}), ended by eos or after the reference
 * completion's length + `margin` tokens, is right when its decoded text, trimmed, equals the reference
 * completion's (eos dropped), trimmed. Reported for the vote over all paths and for each path alone.
 * Prompts of the same token length decode together in batches of `batchSize`.
 * @throws EvaluationError when no example has completion tokens.
 */
export function exactMatch(model: LlamaModel, paths: ExitPath[], examples: Example[], opts: ExactMatchOptions): ExactMatchReport {
  const { tokenizer, margin = 4, batchSize = 64 } = opts;
  const rule = opts.rule ?? 'max';
  const stopIds = tokenizer.eosId === null ? [] : [tokenizer.eosId];
  const text = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true }).trim();
  // Prompt, reference text and token budget of each scorable example, grouped by prompt length.
  const items: { prompt: number[]; reference: string; budget: number }[] = [];
  for (const e of examples) {
    const f = firstTarget(e);
    if (f <= 0) continue;
    const ref = e.labels.slice(f).filter((y) => y !== IGNORE_INDEX && !stopIds.includes(y));
    const budget = ref.length + margin;
    items.push({ prompt: e.inputIds.slice(0, f), reference: text(ref), budget: Math.min(budget, opts.maxNewTokens ?? budget) });
  }
  if (!items.length) throw new EvaluationError('exact match: no example has completion tokens');
  const byLength = new Map<number, typeof items>();
  for (const it of items) {
    const g = byLength.get(it.prompt.length);
    if (g) g.push(it);
    else byLength.set(it.prompt.length, [it]);
  }
  const rate = (ps: ExitPath[]): number => {
    let right = 0;
    for (const group of byLength.values())
      for (let i = 0; i < group.length; i += batchSize) {
        const chunk = group.slice(i, i + batchSize);
        const outs = generateBatch(
          model,
          ps,
          chunk.map((it) => it.prompt),
          { maxNewTokens: chunk.map((it) => it.budget), rule, stopIds },
        );
        outs.forEach((ids, b) => {
          if (text(ids) === chunk[b].reference) right++;
        });
      }
    return right / items.length;
  };
  const perExit = paths.map((p) => rate([p]));
  return { perExit, voted: paths.length === 1 ? perExit[0] : rate(paths), rule, examples: items.length };
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
