/**
 * The execution planner (Edge-LLM's hardware scheduling, Yu et al., DAC 2024, §5; PockEngine's "decide
 * before execution" idea, Zhu et al., MICRO 2023): from a device profile, the model's shape, a LUC policy
 * and the hyperparameters, choose exit layers (window depth), micro-batch and gradient accumulation,
 * whether to cache the frozen prefix's activations across epochs, and each layer's weight storage format;
 * and forecast peak memory and time per step before anything runs.
 *
 * Pure arithmetic: imports no TF.js, so the API can answer dry runs and refuse jobs that cannot fit.
 * The cost model's coefficients are fitted to measurements of the engine (calibration.ts reads
 * calibration.json, written by `node packages/lab/scripts/calibrate-planner.mjs`).
 */
import { CALIBRATION, type CostCoefficients } from './calibration.js';
import type { LlamaConfig } from '../hf-config.js';
import { layerForwardFlops, layerTrainFlops } from '../flops.js';
import { LINEAR_NAMES } from '../names.js';
import { defaultExitLayers } from '../exits.js';

/** The decoder dimensions the cost model needs (a subset of LlamaConfig). */
export type ModelShape = Pick<
  LlamaConfig,
  | 'vocabSize'
  | 'hiddenSize'
  | 'intermediateSize'
  | 'numHiddenLayers'
  | 'numAttentionHeads'
  | 'numKeyValueHeads'
  | 'headDim'
  | 'tieWordEmbeddings'
>;

/** What the planner knows of the machine. Bytes, GFLOP/s. */
export interface DeviceProfile {
  /** memory the job may use (process RSS), bytes */
  memoryBudgetBytes: number;
  threads: number;
  backend: string;
  /** measured SGEMM throughput, GFLOP/s (measureSgemmPeak) */
  matmulGflops: number;
  /** TF.js tensor memory the job may hold at its peak (an accelerator's memory, or a cap on tensors),
   *  bytes; absent = only memoryBudgetBytes applies */
  tensorBudgetBytes?: number;
  /**
   * Resident memory of the process that will run the job before the job loads anything: node, the
   * engine's modules and the TF.js backend, plus whatever the host process holds itself (a worker's
   * database and queue clients), bytes. The RSS forecast adds a run's growth to it. Read it once, after
   * loading the engine and before the process's first job: the wasm heap never shrinks, so a later
   * reading counts a previous job's tensors again. Absent = a bare engine CLI process
   * (CostCoefficients.rssAtStart).
   */
  baseRssBytes?: number;
  /**
   * This machine's non-matmul step time over the calibrated cost model's for the same work
   * (schedule/speed.ts measureStepFactor): the forecast's non-matmul part (per-layer, per-token, dequantization
   * and optimizer terms) is multiplied by it; its matmul part already follows matmulGflops. Absent = 1
   * (the calibration machine's balance of matmul and other work).
   */
  stepTimeFactor?: number;
  /**
   * The backend's hard limit on TF.js tensor memory, bytes: the wasm backend's heap cannot grow past
   * {@link WASM_TENSOR_HEAP_CEILING_BYTES} whatever the machine has; absent = no such limit (cpu, tensorflow).
   * A plan whose TF.js peak exceeds it is refused, like one over tensorBudgetBytes.
   */
  tensorHeapCeilingBytes?: number;
  /**
   * How linears over frozen weights kept outside the heap (16-bit or LUC-packed) run: `native`, the addon's
   * kernel widens a block of rows at a time in its own scratch (native/frozen.c, BLOCK_FLOATS floats, outside
   * the TF.js heap); `tensor`, each weight is widened into a transient float32 tensor freed after its product
   * (backend/frozen.ts, without the addon or on other backends). Absent: `native` on the wasm and cpu
   * backends, else `tensor`.
   */
  frozenKernel?: 'native' | 'tensor';
}

/** Bytes of the native frozen kernel's scratch block (native/frozen.c BLOCK_FLOATS float32s). */
export const FROZEN_SCRATCH_BYTES = 4 * 2 ** 20;

/** Whether a device runs frozen linears natively ({@link DeviceProfile.frozenKernel}, defaulted by backend). */
export function frozenKernelIsNative(dev: Pick<DeviceProfile, 'backend' | 'frozenKernel'>): boolean {
  return dev.frozenKernel ? dev.frozenKernel === 'native' : dev.backend === 'wasm' || dev.backend === 'cpu';
}

/**
 * The wasm backend's maximum heap, bytes: 65536 pages of 64 KiB less one page (tfjs-backend-wasm's
 * `getHeapMax`, the 4 GiB limit of wasm32 memory as Emscripten sets it).
 */
export const WASM_TENSOR_HEAP_CEILING_BYTES = 4294901760;

/**
 * The hard limit on TF.js tensor memory of a backend by name, bytes: {@link WASM_TENSOR_HEAP_CEILING_BYTES}
 * for `wasm`; undefined for the others (cpu and tensorflow tensors live in Node memory without a ceiling).
 */
export function tensorHeapCeilingOf(backend: string): number | undefined {
  return backend === 'wasm' ? WASM_TENSOR_HEAP_CEILING_BYTES : undefined;
}

/** How frozen weights are stored (the safetensors dtype of the model's weights, safetensors-index.ts storedDtype). */
export type StoredDtype = 'F32' | 'F16' | 'BF16';

/**
 * The planner's stored dtype of a model whose weights are mostly `dtype` (a safetensors dtype, or null when
 * unknown): F16 and BF16 as they are, anything else F32 (the engine expands other dtypes to float32 tensors).
 */
export function plannerStoredDtype(dtype: string | null | undefined): StoredDtype {
  return dtype === 'F16' || dtype === 'BF16' ? dtype : 'F32';
}

export interface PlanInput {
  model: ModelShape;
  /**
   * dtype of the frozen weights as stored (default F32). F16/BF16: the embedding, lm_head and every dense
   * layer's seven linears stay at 2 bytes/param outside the TF.js heap (Node memory the native kernels read),
   * plus one layer's float32 copy while it runs; F32: float32 tensors in the TF.js heap.
   */
  storedDtype?: StoredDtype;
  /** per-layer weight bits (16 = dense float32) and sparsity; absent = dense */
  policy?: { bits: number[]; sparsity: number[] } | null;
  /**
   * `edge_llm`: exit windows; `vanilla`: LoRA on every layer, loss at lm_head; `none`: no training (retrieval
   * only): the forecast is one forward pass per micro-batch (no tape, no LoRA, no optimizer) and `steps` is 0
   */
  mode: 'edge_llm' | 'vanilla' | 'none';
  /** requested exits; the planner may add exits (shallower windows) to fit memory */
  exitLayers?: number[];
  loraR: number;
  /** LoRA-wrapped linears per layer (7 = all); `loraTargets` when given */
  loraLinears?: number;
  /** LoRA target-module names (PEFT `target_modules`, e.g. `q_proj`); default the first `loraLinears` of q, k, v, o, gate, up, down */
  loraTargets?: readonly string[];
  /** exit heads: 0 = full trainable copies of lm_head, r > 0 = shared lm_head + rank-r LoRA per exit */
  headRank?: number;
  /** examples per optimizer step (micro-batch x accumulation) */
  batchSize: number;
  /** tokens per example (the max length the data is truncated to, or a measured mean) */
  seqLen: number;
  /** mean tokens per example (the prefix cache keeps each example's unpadded rows); default seqLen */
  meanSeqLen?: number;
  /** tokens of the longest example; default seqLen. A micro-batch is padded to its longest row, so
   *  activation memory peaks at a micro-batch of this length even where most batches are shorter. */
  maxSeqLen?: number;
  steps: number;
  trainExamples: number;
  /** force a micro-batch instead of choosing one */
  microBatch?: number;
  /** how layers before the window run (trainer PrefixMode; default backbone) and the window schedule: an
   *  adapted prefix under round_robin hands each window's output to the next, so no prefix layer runs */
  prefix?: 'backbone' | 'adapted';
  schedule?: 'sequential' | 'round_robin' | 'random';
  /** false: never cache the frozen prefix's outputs (the planner otherwise caches when it fits and the
   *  run has more than one epoch) */
  prefixCache?: boolean;
  groupSize?: number;
  /**
   * scored positions per example (rows whose next token has a label: the completion's tokens and EOS);
   * default {@link CALIBRATION_LABELLED}, what the cost model was fitted with (a one-token answer). Text
   * continuation scores tens per example: the exit head's [rows, vocab] tensors then add memory.
   */
  labelledPerExample?: number;
}

/** Scored positions per example in the calibration runs (calibrate-planner.mjs: the last two tokens). */
export const CALIBRATION_LABELLED = 2;

/**
 * Growth of a step's TF.js peak per scored row beyond the calibration's, in float32 vocab-wide rows, by exit
 * head kind: a shared lm_head plus rank-r LoRA (the head's and the branch's logits, their sum, softmax and the
 * gradients of each are live together) and a full head (vanilla LoRA's lm_head, or full exit heads). Measured
 * on the default model, 8 x 128 tokens, 2 vs 64 scored positions per example, by
 * `node packages/lab/scripts/labelled-rows-memory.mjs`. With a full head the step's peak is elsewhere (the
 * head's own gradient) until the rows' tensors outgrow it, so its growth per row depends on the shape: the
 * planner under-forecasts full-head runs that score many rows on other shapes.
 */
export const HEAD_ROW_TENSORS = { lowRank: 7.96, full: 1.68 } as const;

export type StorageFormat = 'f32' | 'int8' | 'int4';

/** The plan and its forecast. Bytes and milliseconds. */
export interface Plan {
  fits: boolean;
  /** why it does not fit (when fits is false): each limit exceeded, "needs about X MiB of ..., has Y MiB (...)" */
  reason?: string;
  exitLayers: number[];
  /** deepest window, layers */
  windowDepth: number;
  microBatch: number;
  gradAccum: number;
  prefixCache: boolean;
  storage: StorageFormat[];
  /** how the frozen weights were taken to be stored (PlanInput.storedDtype, default F32) */
  storedDtype: StoredDtype;
  forecast: {
    /** TF.js peak tensor bytes of a step (what tf.profile reports) */
    peakTfBytes: number;
    /** process resident memory at peak, bytes (compared with the budget) */
    peakRssBytes: number;
    weightBytes: number;
    trainableBytes: number;
    activationBytes: number;
    prefixCacheBytes: number;
    /** one optimizer step (mode `none`: one forward pass of a batch) */
    stepMs: number;
    /** stepMs x steps (0 for mode `none`) */
    totalMs: number;
    /** matmul FLOPs of one optimizer step (mode `none`: of the forward pass) */
    flopsPerStep: number;
  };
  device: DeviceProfile;
}

/** Error for a request the planner cannot evaluate (bad shapes, empty budget). */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

function windows(exits: number[]): { start: number; end: number }[] {
  return exits.map((e, k) => ({ start: k === 0 ? 0 : exits[k - 1] + 1, end: e }));
}

const storageOf = (bits: number): StorageFormat => (bits >= 16 ? 'f32' : bits > 4 ? 'int8' : 'int4');

/** Bytes of one layer's seven linears in a storage format (+ per-row or per-group float32 scales); `f16`:
 *  dense at 2 bytes/param (F16/BF16 as stored). */
function layerWeightBytes(m: ModelShape, fmt: StorageFormat | 'f16', groupSize: number): number {
  const d = m.hiddenSize,
    f = m.intermediateSize,
    q = m.numAttentionHeads * m.headDim,
    kv = m.numKeyValueHeads * m.headDim;
  const mats: [number, number][] = [
    [q, d],
    [kv, d],
    [kv, d],
    [d, q],
    [f, d],
    [f, d],
    [d, f],
  ];
  let b = 2 * d * 4; // norms
  for (const [o, i] of mats) {
    const n = o * i;
    const scales = o * (groupSize > 0 ? Math.ceil(i / groupSize) : 1) * 4;
    b += fmt === 'f32' ? n * 4 : fmt === 'f16' ? n * 2 : fmt === 'int8' ? n + scales : Math.ceil(n / 2) + scales;
  }
  return b;
}

/**
 * How well the prefix cache serves a window with K windows over `epochs` passes of the data. Under
 * `sequential` a window runs for epochs/K passes in a row: its first pass computes (and stores) every
 * example's prefix, the others read it. Under `round_robin` / `random` each visit of an example lands on a
 * window about uniformly at random, so a window meets an example epochs/K times on average and misses only
 * the first time: 1 - (1 - 1/K)^epochs of the examples are ever stored at its depth (`coverage`).
 * @returns missShare: the fraction of a window's prefix passes that still run (1 = no help from the cache)
 */
export function prefixCacheHits(
  K: number,
  epochs: number,
  schedule: 'sequential' | 'round_robin' | 'random',
): { missShare: number; coverage: number } {
  if (!(epochs > 0) || K < 1) return { missShare: 1, coverage: 0 };
  if (schedule === 'sequential' || K === 1) return { missShare: Math.min(1, K / epochs), coverage: Math.min(1, epochs / K) };
  const coverage = 1 - (1 - 1 / K) ** epochs;
  return { missShare: Math.min(1, coverage / (epochs / K)), coverage };
}

/**
 * The raw quantities of one choice of (exits, micro-batch, cache), before the fitted coefficients:
 * bytes of weights and trainable state, the activation "features" (element counts the coefficients
 * multiply), FLOPs and layer passes. Exported for the calibration script.
 * @param nativeFrozen frozen linears run in the addon's kernel (DeviceProfile.frozenKernel `native`)
 */
export function costFeatures(inp: PlanInput, exits: number[], mb: number, cache: boolean, nativeFrozen = true) {
  const m = inp.model,
    L = m.numHiddenLayers,
    V = m.vocabSize,
    d = m.hiddenSize,
    f = m.intermediateSize;
  // mode `none` runs the frozen model forward only: no LoRA, no heads, no tape (one layer's activations live)
  const training = inp.mode !== 'none';
  const T = inp.seqLen,
    N = mb * T,
    r = training ? inp.loraR : 0;
  // Memory features at the longest micro-batch; time features at seqLen (a typical one).
  const Tm = Math.max(T, inp.maxSeqLen ?? T),
    Nm = mb * Tm;
  const targets = inp.loraTargets ?? LINEAR_NAMES.slice(0, inp.loraLinears ?? 7);
  const nl = targets.length;
  const gs = inp.groupSize ?? 0;
  const bits = inp.policy?.bits ?? new Array(L).fill(16);
  const storage = bits.map(storageOf);
  // Frozen weights: embeddings (+ untied head) + layers in their storage; packed layers are JS memory
  // (not TF.js tensors). With 16-bit storage the embeddings and dense layers stay at their stored 2
  // bytes/param outside the heap in the same way. A product over them widens a block of rows in the native
  // kernel's scratch (outside the heap), or without it the whole weight into a transient float32 tensor.
  const half = inp.storedDtype === 'F16' || inp.storedDtype === 'BF16';
  const embedParams = V * d * (m.tieWordEmbeddings ? 1 : 2);
  const embedTf = half ? 0 : embedParams * 4;
  const embed = embedParams * (half ? 2 : 4);
  const layerBytes = storage.map((s) => layerWeightBytes(m, s === 'f32' && half ? 'f16' : s, gs));
  const tfLayerBytes = storage.map((s, i) => (s === 'f32' && !half ? layerBytes[i] : 0));
  const q = m.numAttentionHeads * m.headDim,
    kv = m.numKeyValueHeads * m.headDim;
  const outside = half || storage.some((s) => s !== 'f32');
  // without the kernel: the widened weight as a JS array and as a tensor (a 16-bit head over the whole vocabulary)
  const largestWeight = 4 * Math.max(q * d, f * d, half ? V * d : 0);
  const transientTf = outside && !nativeFrozen ? largestWeight : 0;
  const transientOutside = outside ? (nativeFrozen ? FROZEN_SCRATCH_BYTES : largestWeight) : 0;
  const weightTf = embedTf + tfLayerBytes.reduce((a, b) => a + b, 0) + transientTf;
  const weightAll = embed + layerBytes.reduce((a, b) => a + b, 0) + transientOutside + transientTf;
  // Trainable state: LoRA (all layers) + exit norms/heads; Adam m and v for everything trained so far.
  const loraPerLayer = r * (d + q + d + kv + d + kv + q + d + d + f + d + f + f + d) * (nl / 7);
  const hr = inp.headRank ?? 0;
  const headParams = hr > 0 ? hr * (V + d) + d : V * d + d;
  const heads = inp.mode === 'edge_llm' ? exits.length * headParams : 0;
  const trainableParams = loraPerLayer * L + heads;
  const wins = inp.mode === 'edge_llm' ? windows(exits) : [{ start: 0, end: L - 1 }];
  const depth = training ? Math.max(...wins.map((w) => w.end - w.start + 1)) : 1;
  const windowParams = loraPerLayer * depth + (inp.mode === 'edge_llm' ? headParams : 0);
  // + the window's gradients and, at a variable's first update (still aliased to the tensor it was
  // initialised from, so AdamW cannot run in place), the composition's three new tensors: 4 x window
  const trainable = training ? 4 * (trainableParams * 3 + windowParams * 4) : 0;
  // An adapted prefix under round_robin keeps each micro-batch's last window output for the next window.
  const handedOn = inp.mode === 'edge_llm' && inp.prefix === 'adapted' && inp.schedule === 'round_robin' && wins.length > 1;
  const prefixOut = 4 * Nm * d * (2 + (handedOn ? Math.ceil(inp.batchSize / mb) : 0));
  // Activation features of the deepest window at the longest micro-batch (element counts per coefficient).
  const act = { d: depth * Nm * d, f: depth * Nm * f, att: depth * mb * m.numAttentionHeads * Tm * Tm, lora: depth * Nm * r * nl };
  // Time features of an average micro-step, windows weighted equally: the window's layers run forward +
  // backward on the tape, the prefix's layers forward only (cheaper by the fitted prefixPassCost); FLOPs
  // are counted as AdaptiveTrainer.matmulFlopsOf counts them.
  const epochs = (inp.steps * inp.batchSize) / Math.max(1, inp.trainExamples);
  const schedule = inp.schedule ?? 'sequential';
  const hits = prefixCacheHits(wins.length, epochs, schedule);
  // The cache keeps every example's unpadded rows at each prefix depth it was needed at: one depth at a time
  // under `sequential` (the trainer frees a finished window's), else each depth an example has met.
  const depths = wins.filter((w) => w.start > 0).length;
  const cacheBytes = cache
    ? inp.trainExamples * (inp.meanSeqLen ?? T) * d * 4 * (schedule === 'sequential' ? Math.min(1, depths) : depths * hits.coverage)
    : 0;
  const prefixShare = handedOn ? 0 : cache && epochs > 1 ? hits.missShare : 1;
  let tapeLayers = 0,
    prefixLayers = training ? 0 : L;
  for (const w of training ? wins : []) {
    tapeLayers += (w.end - w.start + 1) / wins.length;
    prefixLayers += (w.start * prefixShare) / wins.length;
  }
  const fwd = layerForwardFlops(m, mb, T, r, targets);
  const layerTrain = layerTrainFlops(fwd),
    layerFwd = fwd.base + fwd.att;
  // The exit head at the scored rows (the calibration's two per example are its unit); the rows beyond those
  // hold HEAD_ROW_TENSORS vocab-wide float32 rows each at the peak.
  const labelled = inp.labelledPerExample ?? CALIBRATION_LABELLED;
  const headFlops = 2 * mb * (labelled / CALIBRATION_LABELLED) * V * d * (inp.mode === 'edge_llm' ? 3 : training ? 2 : 1);
  const lowRankHead = inp.mode === 'edge_llm' && hr > 0;
  const headRowBytes =
    mb * Math.max(0, labelled - CALIBRATION_LABELLED) * V * 4 * (lowRankHead ? HEAD_ROW_TENSORS.lowRank : HEAD_ROW_TENSORS.full);
  const trainFlops = tapeLayers * layerTrain + prefixLayers * layerFwd + headFlops;
  const attScores = mb * m.numAttentionHeads * T * T;
  // Per optimizer step: parameters AdamW updates (the window's); per micro-step: weights widened just in time
  // (packed layers, and every layer of a 16-bit model, once per layer pass: the scale bench's BF16 runs were
  // 32-69% slower than forecast without this term, bench/results/scale-2026-12-07.json).
  const packedFrac = half ? 1 : storage.filter((x) => x !== 'f32').length / L;
  const layerParams = q * d + 2 * kv * d + d * q + 3 * f * d;
  const dequantElems = (tapeLayers + prefixLayers) * packedFrac * layerParams;
  const time = { tapeLayers, prefixLayers, layerTrainFlops: layerTrain, layerFwdFlops: layerFwd, headFlops, attScores };
  // Tokens of training data the process holds as JS arrays while it trains (RSS: rssPerDataToken).
  const dataTokens = inp.trainExamples * (inp.meanSeqLen ?? T);
  return {
    storage,
    depth,
    N,
    weightTf,
    weightAll,
    trainable,
    /** LoRA and exit-head parameters the run trains in all (what a checkpoint saves, with their AdamW moments) */
    trainableParams: training ? trainableParams : 0,
    prefixOut,
    headRowBytes,
    act,
    cacheBytes,
    dataTokens,
    trainFlops,
    time,
    updParams: training ? windowParams : 0,
    dequantElems,
    accum: Math.ceil(inp.batchSize / mb),
  };
}

/** Forecast of one choice from its features and the fitted coefficients. */
function estimate(inp: PlanInput, dev: DeviceProfile, exits: number[], mb: number, cache: boolean, c: CostCoefficients) {
  const x = costFeatures(inp, exits, mb, cache, frozenKernelIsNative(dev));
  const activations =
    4 * (c.actD * x.act.d + c.actF * x.act.f + c.actAtt * x.act.att + c.actLora * x.act.lora) + x.prefixOut + x.headRowBytes;
  const peakTf = c.tfFixed + x.weightTf + x.trainable + activations;
  // The fit (short runs on a few synthetic examples in a bare engine process), shifted by the host process's
  // own base, plus what a real run adds: long-run growth of V8's heap and native buffers, the data's JS arrays.
  const base = c.rssBase + (dev.baseRssBytes ?? c.rssAtStart) - c.rssAtStart;
  const rss = base + c.rssLongRun + c.rssPerDataToken * x.dataTokens + c.rssPerTfByte * peakTf + (x.weightAll - x.weightTf) + x.cacheBytes;
  const flops = x.trainFlops;
  const t = x.time,
    rho = c.prefixPassCost;
  // Matmul time from FLOPs (prefix FLOPs at the same efficiency); the rest per layer-equivalent.
  const E = t.tapeLayers + rho * t.prefixLayers;
  const matmulMs = (flops / (dev.matmulGflops * 1e9 * c.mmEfficiency)) * 1000;
  const otherMs = E * (c.msPerLayerPass + c.msPerLayerToken * x.N + c.msPerAttScore * t.attScores) + c.msPerDequantElem * x.dequantElems;
  // mode `none`: a forward pass per micro-batch, without the optimizer step's fixed cost
  const update = inp.mode === 'none' ? 0 : c.msPerStep + c.msPerUpdatedParam * x.updParams;
  // The SGEMM reading already scales the matmul time to this machine; the step-time factor scales the rest.
  const stepMs = x.accum * matmulMs + (x.accum * otherMs + update) * (dev.stepTimeFactor ?? 1);
  return {
    storage: x.storage,
    depth: x.depth,
    weightBytes: x.weightAll,
    trainableBytes: x.trainable,
    activationBytes: activations,
    peakTf,
    rss,
    cacheBytes: x.cacheBytes,
    stepMs,
    totalMs: stepMs * inp.steps,
    flopsPerStep: flops * x.accum,
  };
}

/**
 * Chooses the plan: the default (or requested) exits with the largest micro-batch (power of two, <= batchSize)
 * whose forecast fits the budgets (RSS within memoryBudgetBytes, TF.js peak within tensorBudgetBytes and
 * tensorHeapCeilingBytes when set); smaller micro-batches with gradient accumulation first, since they leave
 * the gradient unchanged, then more exits (shallower windows), which change what is trained; prefix caching
 * when the run has more than one epoch and the cache fits too. A request nothing fits is answered with `fits: false` and a reason
 * naming each limit exceeded with its figures ("needs about X MiB of ..., has Y MiB (...)").
 * @throws PlanError for an invalid request.
 */
export function plan(inp: PlanInput, dev: DeviceProfile, coeffs: CostCoefficients = CALIBRATION): Plan {
  const L = inp.model.numHiddenLayers;
  if (!(dev.memoryBudgetBytes > 0)) throw new PlanError('memory_budget_bytes must be positive');
  if (dev.tensorBudgetBytes !== undefined && !(dev.tensorBudgetBytes > 0)) throw new PlanError('tensor_budget_bytes must be positive');
  if (dev.tensorHeapCeilingBytes !== undefined && !(dev.tensorHeapCeilingBytes > 0))
    throw new PlanError('tensor_heap_ceiling_bytes must be positive');
  if (dev.baseRssBytes !== undefined && !(dev.baseRssBytes >= 0)) throw new PlanError('base_rss_bytes must be non-negative');
  if (dev.stepTimeFactor !== undefined && !(dev.stepTimeFactor > 0 && Number.isFinite(dev.stepTimeFactor)))
    throw new PlanError('step_time_factor must be a positive number');
  if (!(inp.batchSize >= 1) || !(inp.seqLen >= 1) || !(inp.steps >= (inp.mode === 'none' ? 0 : 1)))
    throw new PlanError('batch size, sequence length and steps must be positive (steps 0 with mode none)');
  if (inp.policy && (inp.policy.bits.length !== L || inp.policy.sparsity.length !== L))
    throw new PlanError(`policy has ${inp.policy.bits.length} layers, the model ${L}`);
  const exitChoices: number[][] = [];
  if (inp.mode !== 'edge_llm') exitChoices.push([L - 1]);
  else {
    exitChoices.push(inp.exitLayers ?? defaultExitLayers(L));
    for (let n = (inp.exitLayers ?? defaultExitLayers(L)).length + 1; n <= L; n++) exitChoices.push(defaultExitLayers(L, n));
  }
  const mbs: number[] = [];
  if (inp.microBatch) mbs.push(inp.microBatch);
  else for (let mb = 2 ** Math.floor(Math.log2(inp.batchSize)); mb >= 1; mb /= 2) mbs.push(mb);
  const epochs = (inp.steps * inp.batchSize) / Math.max(1, inp.trainExamples);
  const fitsDevice = (e: ReturnType<typeof estimate>) => shortfalls(e, dev).length === 0;
  // A request nothing fits is answered with the choice that came closest (least overshoot of its tightest
  // limit): with full exit heads more exits need more memory, so the last choice tried is not the smallest.
  const overshoot = (e: ReturnType<typeof estimate>) =>
    Math.max(
      e.rss / dev.memoryBudgetBytes,
      dev.tensorBudgetBytes === undefined ? 0 : e.peakTf / dev.tensorBudgetBytes,
      dev.tensorHeapCeilingBytes === undefined ? 0 : e.peakTf / dev.tensorHeapCeilingBytes,
    );
  let closest: ReturnType<typeof estimate> | null = null,
    closestExits = exitChoices[0],
    closestMb = mbs[mbs.length - 1];
  for (const exits of exitChoices) {
    for (const mb of mbs) {
      const e = estimate(inp, dev, exits, mb, false, coeffs);
      if (closest === null || overshoot(e) < overshoot(closest)) {
        closest = e;
        closestExits = exits;
        closestMb = mb;
      }
      if (fitsDevice(e)) {
        let final = e,
          cache = false;
        // cache only where a window meets an example more than once (not, e.g., sequential windows of one epoch each)
        if (
          inp.mode === 'edge_llm' &&
          inp.prefix !== 'adapted' &&
          epochs > 1 &&
          inp.prefixCache !== false &&
          prefixCacheHits(exits.length, epochs, inp.schedule ?? 'sequential').missShare < 1
        ) {
          const withCache = estimate(inp, dev, exits, mb, true, coeffs);
          if (fitsDevice(withCache)) {
            final = withCache;
            cache = true;
          }
        }
        return result(true, undefined, exits, mb, cache, final, inp, dev);
      }
    }
  }
  return result(
    false,
    `${shortfalls(closest!, dev).join('; ')} (even with micro-batch ${closestMb} and ${closestExits.length} exits)`,
    closestExits,
    closestMb,
    false,
    closest!,
    inp,
    dev,
  );
}

/**
 * The limits a forecast exceeds, each as "needs about X MiB of <what>, has Y MiB (<which limit>)": the
 * RSS budget, the tensor budget and the backend's heap ceiling, in that order; empty when it fits.
 */
function shortfalls(e: { rss: number; peakTf: number }, dev: DeviceProfile): string[] {
  const up = (b: number) => Math.ceil(b / 2 ** 20),
    down = (b: number) => Math.floor(b / 2 ** 20);
  const out: string[] = [];
  if (e.rss > dev.memoryBudgetBytes)
    out.push(`needs about ${up(e.rss)} MiB of memory (peak RSS), has ${down(dev.memoryBudgetBytes)} MiB (the memory budget)`);
  if (dev.tensorBudgetBytes !== undefined && e.peakTf > dev.tensorBudgetBytes)
    out.push(`needs about ${up(e.peakTf)} MiB of TF.js tensors, has ${down(dev.tensorBudgetBytes)} MiB (the tensor budget)`);
  if (dev.tensorHeapCeilingBytes !== undefined && e.peakTf > dev.tensorHeapCeilingBytes)
    out.push(
      `needs about ${up(e.peakTf)} MiB of TF.js tensors, has ${down(dev.tensorHeapCeilingBytes)} MiB (the ${dev.backend} backend's heap ceiling)`,
    );
  return out;
}

function result(
  fits: boolean,
  reason: string | undefined,
  exits: number[],
  mb: number,
  cache: boolean,
  e: ReturnType<typeof estimate>,
  inp: PlanInput,
  dev: DeviceProfile,
): Plan {
  return {
    fits,
    reason,
    exitLayers: exits,
    windowDepth: e.depth,
    microBatch: mb,
    gradAccum: Math.ceil(inp.batchSize / mb),
    prefixCache: cache,
    storage: e.storage,
    storedDtype: inp.storedDtype ?? 'F32',
    forecast: {
      peakTfBytes: Math.round(e.peakTf),
      peakRssBytes: Math.round(e.rss),
      weightBytes: Math.round(e.weightBytes),
      trainableBytes: Math.round(e.trainableBytes),
      activationBytes: Math.round(e.activationBytes),
      prefixCacheBytes: Math.round(e.cacheBytes),
      stepMs: e.stepMs,
      totalMs: e.totalMs,
      flopsPerStep: e.flopsPerStep,
    },
    device: dev,
  };
}
