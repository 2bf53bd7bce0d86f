/**
 * Adaptive layer tuning (Edge-LLM, Yu et al., DAC 2024, section "Adaptive Layer Tuning and Voting";
 * official code: GATECH-EIC/Edge-LLM `utils/trainer_wrappers.py`) and, for comparison, vanilla LoRA
 * tuning through all layers.
 *
 * Each optimizer step trains ONE window (the layers between two exits) with its LoRA and its exit
 * head: the frozen prefix runs outside the gradient tape (no saved activations) without LoRA, the
 * forward stops at the active exit, and the loss is next-token cross-entropy on response tokens only,
 * computed only at the positions that carry a label.
 *
 * The trainer only trains: checkpoint files are `checkpoint.ts`'s (through {@link AdaptiveTrainer.stateDict}
 * and {@link AdaptiveTrainer.loadStateDict}), the prefix cache is `prefix-cache.ts`'s.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LlamaModel, Linear } from '../model/llama.js';
import { attachLora, type LoraConfig } from '../model/lora.js';
import { sparseSoftmaxCrossEntropy } from '../backend/index.js';
import { Rng } from '../util/rng.js';
import { AdamW, clipByGlobalNorm, globalNorm, scheduledLr, type LrSchedule } from './optim.js';
import { defaultExitLayers, IGNORE_INDEX } from '@edgetune/core';
import { createExits, exitLogits, windowLayers, type ExitHead } from './exits.js';
import { BatchIterator, type Batch, type BatchCursor, type Example } from './batches.js';
import { PrefixCache } from './prefix-cache.js';
import { peftName } from '../model/lora.js';
import { layerForwardFlops, layerTrainFlops } from '@edgetune/core';

export type WindowSchedule = 'sequential' | 'round_robin' | 'random';
export type TuneMode = 'edge_llm' | 'vanilla';
/**
 * How the layers before the active window run (edge_llm mode).
 * - `backbone` (official code): without LoRA. Exit k's path at inference is the backbone up to its
 *   window, then the window with LoRA; the prefix is static, so it can be cached across epochs.
 * - `adapted` (beyond the official code): with the LoRA the earlier windows trained, frozen and off the
 *   tape. Exit k's path is LoRA on layers 0..e_k, so one forward pass yields every exit at inference
 *   and the deepest path is a plain PEFT adapter on all layers. With `round_robin`, the K windows of a
 *   cycle train on the same micro-batches and window k's output (from its own forward on the tape, LoRA
 *   dropout included, before its update) is window k+1's input: no layer runs twice per cycle, so a step
 *   costs only its window.
 */
export type PrefixMode = 'backbone' | 'adapted';

/** Everything a tuning run needs besides the model and data. Step counts are optimizer steps. */
export interface TuneOptions {
  /** `edge_llm`: adaptive layer tuning with exits; `vanilla`: LoRA on every layer, loss at lm_head. */
  mode: TuneMode;
  /** exit layers (0-based); default {@link defaultExitLayers}. */
  exitLayers?: number[];
  schedule: WindowSchedule;
  lora: LoraConfig;
  /** optimizer steps in total (over all windows) */
  steps: number;
  microBatch: number;
  gradAccum: number;
  /** peak learning rate */
  lr: number;
  warmupSteps: number;
  lrSchedule: LrSchedule;
  weightDecay: number;
  /** global-norm clip; 0 disables */
  maxGradNorm: number;
  seed: number | string;
  /** train the exit norms and heads (default true; the official code trains the heads) */
  trainHeads?: boolean;
  /** 0: each exit head is a full trainable copy of lm_head (official code); r > 0: lm_head shared and
   *  frozen plus a rank-r LoRA per exit (see ExitHead.lora: far less trainable state) */
  headRank?: number;
  /**
   * cache each example's frozen-prefix output (the window's input) across epochs, float32 in JS memory,
   * so later epochs skip the prefix; the planner turns it on when it fits (edge_llm mode only)
   */
  prefixCache?: boolean;
  /** layers before the window: `backbone` (default, official code) or `adapted` (see PrefixMode) */
  prefix?: PrefixMode;
  /** wrap steps in tf.profile to record peak tensor bytes (costs a little time): true = every step,
   *  n = every n-th step plus the first step of each window */
  measureMemory?: boolean | number;
}

export const DEFAULT_TUNE: Omit<TuneOptions, 'lora'> = {
  mode: 'edge_llm',
  schedule: 'sequential',
  steps: 200,
  microBatch: 8,
  gradAccum: 1,
  lr: 1e-3,
  warmupSteps: 10,
  lrSchedule: 'cosine',
  weightDecay: 0,
  maxGradNorm: 1,
  seed: 42,
  trainHeads: true,
};

/**
 * A run that diverged: the loss, the gradients' norm or the updated weights of step `step` are not finite
 * (NaN or infinite), so further steps cannot recover. Thrown before the non-finite gradients are applied;
 * with non-finite weights, after the update that made them.
 */
export class TrainingDivergedError extends Error {
  constructor(
    /** the optimizer step (1-based) that diverged */
    readonly step: number,
    /** what was not finite */
    readonly quantity: 'loss' | 'gradient norm' | 'weights',
    readonly value: number,
  ) {
    super(`training diverged at step ${step}: the ${quantity} is ${value}; lower the learning rate or lora_alpha`);
    this.name = 'TrainingDivergedError';
  }
}

/** What one optimizer step reports (units: ms, tokens, bytes). */
export interface StepReport {
  step: number;
  totalSteps: number;
  /** index of the trained window/exit (0 in vanilla mode) */
  window: number;
  exitLayer: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** real tokens in this step's micro-batches */
  tokens: number;
  stepMs: number;
  elapsedMs: number;
  tokensPerSec: number;
  etaMs: number;
  /** tf.profile peak bytes of this step (measureMemory only) */
  peakTfBytes?: number;
  /** where the step's wall time went, ms: the frozen prefix forward (or cache gather), the window's
   *  forward + backward on the tape, and clipping + AdamW; the rest is batching and bookkeeping */
  phases: { prefixMs: number; tapeMs: number; updateMs: number };
}

/** Serializable trainer state for checkpoints (tensors separately, by stable names). */
export interface TrainerState {
  step: number;
  windowSteps: number[];
  cursor: BatchCursor;
  rng: number;
  optimizerSteps: Record<string, number>;
  elapsedMs: number;
  tokens: number;
  /** matmul FLOPs executed so far (analytic count, see matmulFlopsOf) */
  flops?: number;
  /** adapted-prefix cycles: data cursor at the start of the current cycle (its micro-batches are redrawn on resume) */
  cycleCursor?: BatchCursor;
  /** adapted-prefix cycles: per micro-batch, the layer the handed-on output feeds (-1: none); the outputs
   *  are saved as `carry.<slot>` tensors */
  carryLevels?: number[];
}

/** A tensor's shape and float32 data, row-major, in host memory. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/**
 * Everything a resumed run needs (PyTorch's `state_dict`): the serializable counters and the tensors by
 * stable name; see {@link AdaptiveTrainer.stateDict} for the names.
 */
export interface TrainerStateDict {
  state: TrainerState;
  tensors: Map<string, HostTensor>;
}

/** Scored positions of one example: labels at t >= 1, each the target of row t - 1 (see labelledRows). */
export function scoredPositions(labels: ArrayLike<number>): number {
  let n = 0;
  for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) n++;
  return n;
}

/** Rows (b*T + t) whose next token has a label, and those labels. */
function labelledRows(labels: number[][]): { rows: Int32Array; targets: Int32Array } {
  const rows: number[] = [],
    targets: number[] = [];
  const T = labels[0].length;
  for (let b = 0; b < labels.length; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[b][t + 1];
      if (y !== IGNORE_INDEX) {
        rows.push(b * T + t);
        targets.push(y);
      }
    }
  }
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
}

/**
 * Runs adaptive layer tuning (or vanilla LoRA) on a model. LoRA is attached to the targeted linears of
 * every layer at construction; the exits are created from the model's final norm and head.
 */
export class AdaptiveTrainer {
  readonly exits: ExitHead[];
  readonly loraLinears: Linear[];
  readonly optimizer: AdamW;
  readonly iterator: BatchIterator;
  state: TrainerState;
  private rng: Rng;
  private readonly stepsPerWindow: number[];
  private peakTfBytes = 0;
  private peakRssBytes = 0;
  /** frozen-prefix outputs per example (opts.prefixCache), else null */
  readonly prefixCache: PrefixCache | null;
  /** adapted-prefix cycles: the cycle's micro-batches, and per micro-batch the last window's output
   *  [batch*seq, hidden] with the layer it feeds (the next window's start) */
  private cycleBatches: Batch[] = [];
  private carry: ({ level: number; h: tf.Tensor2D } | undefined)[] = [];

  constructor(
    readonly model: LlamaModel,
    examples: Example[],
    readonly opts: TuneOptions,
    padId: number,
  ) {
    const L = model.config.numHiddenLayers;
    this.rng = new Rng(`${opts.seed}:init`);
    this.loraLinears = attachLora(model, opts.lora, this.rng);
    if (!this.loraLinears.length)
      throw new Error(`LoRA target_modules ${JSON.stringify(opts.lora.targetModules)} match no linear of the model`);
    const exitLayers = opts.mode === 'vanilla' ? [L - 1] : (opts.exitLayers ?? defaultExitLayers(L));
    this.exits = opts.mode === 'vanilla' ? [] : createExits(model, exitLayers, opts.headRank ?? 0, () => this.rng.next());
    this.optimizer = new AdamW({ lr: opts.lr, weightDecay: opts.weightDecay });
    this.iterator = new BatchIterator(examples, opts.microBatch, padId, `${opts.seed}:data`);
    this.prefixCache = opts.prefixCache ? new PrefixCache(model.config.hiddenSize) : null;
    const K = Math.max(1, this.exits.length);
    // Steps allotted to each window: sequential phases get floor(N/K), the remainder goes to the last
    // (official code); round-robin/random spread evenly in expectation.
    this.stepsPerWindow = new Array(K).fill(Math.floor(opts.steps / K));
    this.stepsPerWindow[K - 1] += opts.steps - Math.floor(opts.steps / K) * K;
    this.state = {
      step: 0,
      windowSteps: new Array(K).fill(0),
      cursor: this.iterator.cursor,
      rng: this.rng.state(),
      optimizerSteps: {},
      elapsedMs: 0,
      tokens: 0,
    };
  }

  /** Window trained at optimizer step `step` under the configured schedule. */
  windowAt(step: number): number {
    const K = Math.max(1, this.exits.length);
    if (K === 1) return 0;
    switch (this.opts.schedule) {
      case 'sequential': {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          acc += this.stepsPerWindow[k];
          if (step < acc) return k;
        }
        return K - 1;
      }
      case 'round_robin':
        return step % K;
      case 'random':
        return new Rng(`${this.opts.seed}:window:${step}`).int(K);
    }
  }

  /** True when the windows of a round-robin cycle share micro-batches and hand their outputs on (adapted prefix). */
  get cascades(): boolean {
    return this.opts.mode === 'edge_llm' && this.opts.prefix === 'adapted' && this.opts.schedule === 'round_robin' && this.exits.length > 1;
  }

  /** Trainable variables of window k (its LoRA factors, and its exit norm + head). */
  trainableVars(k: number): tf.Variable[] {
    if (this.opts.mode === 'vanilla') return this.loraLinears.flatMap((l) => [l.lora!.A, l.lora!.B]);
    const e = this.exits[k];
    const layers = new Set(windowLayers(e));
    const vars = this.loraLinears
      .filter((l) => layers.has(Number(/\.layers\.(\d+)\./.exec(l.name)![1])))
      .flatMap((l) => [l.lora!.A, l.lora!.B]);
    if (this.opts.trainHeads !== false) vars.push(e.norm, ...(e.lora ? [e.lora.A, e.lora.B] : [e.head as tf.Variable]));
    return vars;
  }

  /**
   * Loss of one micro-batch for window k, and its gradients w.r.t. the window's variables.
   * The prefix (layers before the window) runs in a tidy outside the tape, or comes from the cache or,
   * in an adapted-prefix cycle, from the previous window's output on the same micro-batch (`slot`).
   * @returns also the number of prefix layers that actually ran (for the FLOP count)
   */
  private microStep(
    k: number,
    batch: Batch,
    seed: number,
    phases: StepReport['phases'],
    slot: number,
  ): { loss: number; grads: Record<string, tf.Tensor>; prefixLayers: number } {
    const m = this.model;
    const B = batch.ids.length,
      T = batch.ids[0].length;
    const { rows, targets } = labelledRows(batch.labels);
    if (!rows.length) return { loss: 0, grads: {}, prefixLayers: 0 };
    const ctx = m.context({ batch: B, seq: T, training: true, seed });
    const vanilla = this.opts.mode === 'vanilla';
    const start = vanilla ? 0 : this.exits[k].start;
    const end = vanilla ? m.config.numHiddenLayers - 1 : this.exits[k].layer;
    const ids = tf.tensor1d(Int32Array.from(batch.ids.flat()), 'int32');
    const t0 = performance.now();
    const { h: prefix, layers: prefixLayers } = this.prefixOutput(batch, ids, start, ctx, slot);
    const t1 = performance.now();
    phases.prefixMs += t1 - t0;
    const rowT = tf.tensor1d(rows, 'int32'),
      tgt = tf.tensor1d(targets, 'int32');
    const vars = this.trainableVars(k);
    const handOn = this.cascades && k < this.exits.length - 1;
    let out: tf.Tensor2D | null = null;
    const { value, grads } = tf.variableGrads(() => {
      let h = prefix;
      for (let i = start; i <= end; i++) h = m.layer(i, h, ctx, true);
      if (handOn) out = tf.keep(h); // the next window's input: a value, not a tape link
      const sel = tf.gather(h, rowT) as tf.Tensor2D;
      const logits = vanilla
        ? m.headLogits(m.rmsNorm(sel, m.finalNorm))
        : exitLogits(this.exits[k], m.rmsNorm(sel, this.exits[k].norm as tf.Tensor1D));
      return sparseSoftmaxCrossEntropy(logits, tgt);
    }, vars);
    if (out) this.carry[slot] = { level: end + 1, h: out };
    const loss = value.dataSync()[0];
    phases.tapeMs += performance.now() - t1;
    tf.dispose([value, prefix, ids, rowT, tgt]);
    return { loss, grads, prefixLayers };
  }

  /**
   * The window's input for a batch: layers 0..start-1 off the tape, without LoRA (`backbone`) or with the
   * earlier windows' LoRA (`adapted`). With prefixCache (backbone only), per-example outputs are stored
   * on first sight and reused; right padding and causal attention make an example's prefix output
   * independent of its batch-mates, so the cached rows are exact. In an adapted-prefix cycle the previous
   * window's output on the same micro-batch is used as is.
   * @returns the input [batch*seq, hidden] and how many layers ran to make it
   */
  private prefixOutput(
    batch: Batch,
    ids: tf.Tensor1D,
    start: number,
    ctx: ReturnType<LlamaModel['context']>,
    slot: number,
  ): { h: tf.Tensor2D; layers: number } {
    const m = this.model;
    const adapted = this.opts.mode === 'edge_llm' && this.opts.prefix === 'adapted';
    const carried = this.carry[slot];
    this.carry[slot] = undefined;
    if (carried && carried.level === start) return { h: carried.h, layers: 0 };
    carried?.h.dispose();
    // Off the tape the adapted prefix runs without LoRA dropout (as at inference).
    const pctx = adapted ? { ...ctx, training: false } : ctx;
    const run = () =>
      tf.tidy(() => {
        let h = m.embed(ids);
        for (let i = 0; i < start; i++) h = m.layer(i, h, pctx, adapted);
        return h;
      });
    const cache = this.prefixCache;
    if (adapted || !cache || start === 0 || !batch.indices) return { h: run(), layers: start };
    const cached = cache.get(start, batch);
    if (cached) return { h: tf.tensor2d(cached, [batch.ids.length * batch.ids[0].length, m.config.hiddenSize]), layers: 0 };
    const h = run();
    cache.put(start, batch, h.dataSync() as Float32Array);
    return { h, layers: start };
  }

  /**
   * Matrix-multiply FLOPs one micro-step of window k executes on `batch` (2*M*N*K per product): the
   * frozen prefix forward (`prefixLayers` layers: the window's start unless cached or handed on), the
   * window forward with LoRA, its backward (input gradients through the frozen weights, LoRA factor
   * gradients, attention's four products) and the head at the labelled rows. Counted analytically so
   * fused native kernels are counted like BLAS calls.
   */
  matmulFlopsOf(k: number, batch: Batch, prefixLayers?: number): number {
    const c = this.model.config;
    const layer = layerForwardFlops(c, batch.ids.length, batch.ids[0].length, this.opts.lora.r, this.opts.lora.targetModules);
    const vanilla = this.opts.mode === 'vanilla';
    const start = vanilla ? 0 : this.exits[k].start,
      end = vanilla ? c.numHiddenLayers - 1 : this.exits[k].layer;
    const labelled = batch.labels.reduce((n, row) => n + scoredPositions(row), 0);
    const head = 2 * labelled * c.vocabSize * c.hiddenSize;
    return (prefixLayers ?? start) * (layer.base + layer.att) + (end - start + 1) * layerTrainFlops(layer) + head * (vanilla ? 2 : 3);
  }

  /** Examples whose prefix output came from the prefix cache (0 without one). */
  get cacheHits(): number {
    return this.prefixCache?.hits ?? 0;
  }
  /** Examples whose prefix output was computed and stored in the prefix cache (0 without one). */
  get cacheMisses(): number {
    return this.prefixCache?.misses ?? 0;
  }
  /** Bytes held by the prefix cache (0 without one). */
  get cacheBytes(): number {
    return this.prefixCache?.bytes ?? 0;
  }

  /** Runs one optimizer step (gradAccum micro-batches) and reports it. */
  async step(): Promise<StepReport> {
    const t0 = performance.now();
    const s = this.state.step;
    const k = this.windowAt(s);
    const vars = this.trainableVars(k);
    // Sequential phases never return to an earlier window: free its cached rows.
    if (this.opts.schedule === 'sequential' && this.exits.length) this.prefixCache?.evict(this.exits[k].start);
    let tokens = 0,
      lossSum = 0,
      flops = 0;
    const phases = { prefixMs: 0, tapeMs: 0, updateMs: 0 };
    let acc: Record<string, tf.Tensor> = {};
    if (this.cascades && (k === 0 || this.cycleBatches.length !== this.opts.gradAccum)) {
      // A new cycle draws its micro-batches once; resumed mid-cycle, it redraws them from the cycle's start.
      if (k !== 0 && this.state.cycleCursor) this.iterator.seek(this.state.cycleCursor);
      else this.state.cycleCursor = { ...this.iterator.cursor };
      this.cycleBatches = Array.from({ length: this.opts.gradAccum }, () => this.iterator.next());
    }
    const run = () => {
      for (let a = 0; a < this.opts.gradAccum; a++) {
        const batch = this.cascades ? this.cycleBatches[a] : this.iterator.next();
        tokens += batch.tokens;
        const { loss, grads, prefixLayers } = this.microStep(k, batch, (s * 131 + a) >>> 0, phases, a);
        flops += this.matmulFlopsOf(k, batch, prefixLayers);
        lossSum += loss;
        for (const [n, g] of Object.entries(grads)) {
          if (acc[n]) {
            const old = acc[n];
            acc[n] = tf.add(old, g);
            old.dispose();
            g.dispose();
          } else acc[n] = g;
        }
      }
      if (this.opts.gradAccum > 1) {
        for (const n of Object.keys(acc)) {
          const old = acc[n];
          acc[n] = tf.div(old, this.opts.gradAccum);
          old.dispose();
        }
      }
    };
    let peakTfBytes: number | undefined;
    let gradNorm = 0;
    const stepWindow = this.state.windowSteps[k];
    const lr = scheduledLr(
      this.opts.lr,
      stepWindow,
      this.opts.mode === 'vanilla' ? this.opts.steps : Math.max(1, this.stepsPerWindow[k]),
      this.opts.warmupSteps,
      this.opts.lrSchedule,
    );
    const diverged = (quantity: TrainingDivergedError['quantity'], value: number) => {
      tf.dispose(Object.values(acc));
      acc = {};
      return new TrainingDivergedError(s + 1, quantity, value);
    };
    const update = () => {
      const u0 = performance.now();
      // A non-finite loss or gradient would poison every weight it reaches: stop before applying it.
      const loss = lossSum / this.opts.gradAccum;
      if (!Number.isFinite(loss)) throw diverged('loss', loss);
      gradNorm = clipByGlobalNorm(acc, this.opts.maxGradNorm);
      if (!Number.isFinite(gradNorm)) throw diverged('gradient norm', gradNorm);
      this.optimizer.apply(vars, acc, lr);
      tf.dispose(Object.values(acc));
      acc = {};
      // A huge learning rate overflows the weights with finite gradients: caught here, not one step late.
      const weightNorm = globalNorm(vars);
      if (!Number.isFinite(weightNorm)) throw diverged('weights', weightNorm);
      phases.updateMs += performance.now() - u0;
    };
    const mm = this.opts.measureMemory;
    const profileThis = mm === true || (typeof mm === 'number' && mm > 0 && (s % mm === 0 || stepWindow === 0));
    if (profileThis) {
      const info = await tf.profile(() => {
        run();
        update();
      });
      peakTfBytes = info.peakBytes;
      if (peakTfBytes > this.peakTfBytes) this.peakTfBytes = peakTfBytes;
    } else {
      run();
      update();
    }
    const stepMs = performance.now() - t0;
    this.state.step++;
    if (this.done) {
      this.carry.forEach((c) => c?.h.dispose());
      this.carry = [];
    }
    this.state.windowSteps[k]++;
    this.state.elapsedMs += stepMs;
    this.state.tokens += tokens;
    this.state.flops = (this.state.flops ?? 0) + flops;
    this.state.cursor = this.iterator.cursor;
    const rss = process.memoryUsage().rss;
    if (rss > this.peakRssBytes) this.peakRssBytes = rss;
    const tps = this.state.tokens / (this.state.elapsedMs / 1000);
    const remaining = this.opts.steps - this.state.step;
    return {
      step: this.state.step,
      totalSteps: this.opts.steps,
      window: k,
      exitLayer: this.opts.mode === 'vanilla' ? this.model.config.numHiddenLayers - 1 : this.exits[k].layer,
      loss: lossSum / this.opts.gradAccum,
      lr,
      gradNorm,
      tokens,
      stepMs,
      elapsedMs: this.state.elapsedMs,
      tokensPerSec: tps,
      etaMs: (this.state.elapsedMs / this.state.step) * remaining,
      peakTfBytes,
      phases,
    };
  }

  /** Every trainable variable with a stable name (PEFT names for LoRA, `exits.<layer>.*` for exits). */
  namedVariables(): Map<string, tf.Variable> {
    const m = new Map<string, tf.Variable>();
    for (const l of this.loraLinears) {
      m.set(peftName(l.name, 'lora_A'), l.lora!.A);
      m.set(peftName(l.name, 'lora_B'), l.lora!.B);
    }
    for (const e of this.exits) {
      m.set(`exits.${e.layer}.norm.weight`, e.norm);
      if (e.lora) {
        m.set(`exits.${e.layer}.head.lora_A.weight`, e.lora.A);
        m.set(`exits.${e.layer}.head.lora_B.weight`, e.lora.B);
      } else m.set(`exits.${e.layer}.head.weight`, e.head as tf.Variable);
    }
    return m;
  }

  /**
   * Everything a resumed run needs, by stable names (PyTorch's `state_dict`). `state`: counters, data
   * cursor, RNG state, AdamW step counts keyed by stable name and, in an adapted-prefix cycle, the layer
   * each handed-on output feeds. `tensors` (float32): the trainable variables ({@link namedVariables}
   * names), the AdamW moments (`optimizer.<name>.exp_avg`, `optimizer.<name>.exp_avg_sq`) and the
   * handed-on outputs (`carry.<slot>`, [batch*seq, hidden]). Their data may be the backend's own arrays,
   * not copies (a full exit head is vocab x hidden): write them out before the next step updates them.
   */
  stateDict(): TrainerStateDict {
    const tensors = new Map<string, HostTensor>();
    const byVar = new Map<string, string>();
    for (const [name, v] of this.namedVariables()) {
      tensors.set(name, hostTensor(v));
      byVar.set(v.name, name);
    }
    const opt = this.optimizer.stateTensors();
    for (const [key, t] of opt.tensors) {
      const m = /^(.*)\.(exp_avg|exp_avg_sq)$/.exec(key)!;
      const stable = byVar.get(m[1]);
      if (stable) tensors.set(`optimizer.${stable}.${m[2]}`, hostTensor(t));
    }
    const optimizerSteps: Record<string, number> = {};
    for (const [k, n] of Object.entries(opt.steps)) {
      const stable = byVar.get(k);
      if (stable) optimizerSteps[stable] = n;
    }
    const carryLevels = this.carry.map((c, slot) => {
      if (c) tensors.set(`carry.${slot}`, hostTensor(c.h));
      return c ? c.level : -1;
    });
    // A copy: the live cursor moves as batches are drawn.
    return { state: structuredClone({ ...this.state, optimizerSteps, rng: this.rng.state(), carryLevels }), tensors };
  }

  /**
   * Restores what {@link stateDict} returned (same model, data and options), exactly: variables, AdamW
   * moments and step counts, counters, data cursor, RNG state and handed-on outputs. The prefix cache is
   * kept (the backbone prefix it holds does not change).
   * @throws Error naming a variable the dict lacks or holds with another shape (nothing restored then)
   */
  loadStateDict({ state, tensors }: TrainerStateDict): void {
    const vars = this.namedVariables();
    for (const [name, v] of vars) {
      const t = tensors.get(name);
      if (!t) throw new Error(`state dict lacks ${name}`);
      if (t.shape.join() !== v.shape.join()) throw new Error(`${name} has shape [${t.shape}], expected [${v.shape}]`);
    }
    const byStable = new Map<string, string>();
    for (const [name, v] of vars) {
      const t = tensors.get(name)!;
      tf.tidy(() => v.assign(tf.tensor(t.data, t.shape)));
      byStable.set(name, v.name);
    }
    const moments = new Map<string, HostTensor>();
    for (const [key, t] of tensors) {
      const m = /^optimizer\.(.*)\.(exp_avg|exp_avg_sq)$/.exec(key);
      if (m && byStable.has(m[1])) moments.set(`${byStable.get(m[1])}.${m[2]}`, t);
    }
    const steps: Record<string, number> = {};
    for (const [k, n] of Object.entries(state.optimizerSteps)) if (byStable.has(k)) steps[byStable.get(k)!] = n;
    this.optimizer.restore(moments, steps);
    this.carry.forEach((c) => c?.h.dispose());
    this.carry = (state.carryLevels ?? []).map((level, slot) => {
      const t = tensors.get(`carry.${slot}`);
      return level >= 0 && t ? { level, h: tf.tensor2d(t.data, t.shape as [number, number]) } : undefined;
    });
    this.cycleBatches = [];
    this.state = { ...state, optimizerSteps: {} };
    this.rng.restore(state.rng);
    this.iterator.seek(state.cursor);
  }

  /** True when every configured step has run. */
  get done(): boolean {
    return this.state.step >= this.opts.steps;
  }

  /** Peak process RSS seen after a step (bytes). */
  get peakRss(): number {
    return this.peakRssBytes;
  }
  /** Peak TF.js tensor bytes seen by a profiled step (measureMemory), 0 when none was profiled. */
  get peakTf(): number {
    return this.peakTfBytes;
  }
}

function hostTensor(t: tf.Tensor): HostTensor {
  return { shape: t.shape, data: t.dataSync() as Float32Array };
}
