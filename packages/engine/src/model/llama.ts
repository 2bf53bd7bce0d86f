/**
 * LLaMA-family decoder in TensorFlow.js, numerically following Hugging Face `LlamaForCausalLM`
 * (transformers `models/llama/modeling_llama.py`): RMSNorm, rotary embeddings (rotate_half form,
 * optionally scaled, see rope.ts), grouped-query attention, SwiGLU MLP, tied or untied LM head; with
 * Qwen2's q/k/v biases (`Qwen2ForCausalLM`) and Mistral's sliding attention window (`MistralForCausalLM`).
 *
 * Activations are kept 2-D, [batch*seq, hidden], because tf.matMul(3-D, 2-D) has no gradient for its
 * second input in tfjs 4.22. Weights keep the HF layout [out, in] and are multiplied transposed.
 *
 * RMSNorm, RoPE + head split, the attention core, SwiGLU and linears with LoRA are the fused ops of
 * backend/fused.ts: native kernels when the addon is loaded (wasm/cpu), else TF.js compositions.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  linearHasBias,
  loadLlamaConfig,
  readWeightIndex,
  type TensorEntry,
  LINEAR_NAMES,
  type LinearName,
  type LlamaConfig,
  IGNORE_INDEX,
} from '@edgetune/core';
import { readWeightTensors, type NamedTensor } from '../io/safetensors.js';
import {
  type FileMatrix,
  frozenBytes,
  frozenLoraLinear,
  frozenMatMulT,
  gatherRows,
  isTensor,
  matMulT,
  type StoredMatrix,
  type WeightMatrix,
} from '../backend/frozen.js';
import {
  attention,
  attentionOps,
  dropout,
  FUSED_KERNELS,
  fusedKernelsActive,
  loraLinear,
  ropeHeads,
  rmsNorm as fusedRmsNorm,
  swiglu,
  MASK_VALUE,
} from '../backend/fused.js';
import { fakeQuantActivations, type PackedWeight } from '../compress/quantize.js';
import { ropeInvFreq } from './rope.js';

/** LoRA factors on one linear (PEFT `LoraLayer`): y += scale * B(A(dropout(x))). */
export interface LoraPair {
  /** [r, in] */
  A: tf.Variable;
  /** [out, r] */
  B: tf.Variable;
  /** lora_alpha / r */
  scale: number;
  /** dropout probability on the LoRA branch input (training only) */
  dropout: number;
}

/** A bias-optional linear layer, weight in HF layout [out, in]. */
export interface Linear {
  /** HF module path, e.g. `model.layers.3.self_attn.q_proj`. */
  name: string;
  /** [out, in]; when `packed` or `stored` is set this is an empty placeholder (the weight lives outside the heap). */
  weight: tf.Tensor2D;
  /** [out] */
  bias?: tf.Tensor1D;
  lora?: LoraPair;
  /** LUC: the frozen weight stored as packed low-bit integers, dequantized per use (layer by layer). */
  packed?: PackedWeight;
  /**
   * The frozen weight in its stored precision outside the TF.js heap (BF16/F16/F32 from the safetensors), in
   * memory or still in its file (a model loaded `lazy`, to be compressed).
   */
  stored?: StoredMatrix | FileMatrix;
  /** LUC: fake-quantize this linear's input to this many bits per token (LLM-QAT, STE); absent = off. */
  actBits?: number;
}

/** [out, in] of a linear, whether its weight is dense or packed. */
export function weightShape(lin: Linear): [number, number] {
  const ext = lin.packed ?? lin.stored;
  return ext ? [ext.rows, ext.cols] : (lin.weight.shape as [number, number]);
}

/** One `LlamaDecoderLayer`. */
export interface DecoderLayer {
  index: number;
  /** [hidden] */
  inputNorm: tf.Tensor1D;
  /** [hidden] */
  postNorm: tf.Tensor1D;
  linears: Record<LinearName, Linear>;
}

/** Per-forward context shared by every layer. */
export interface ForwardContext {
  batch: number;
  seq: number;
  /** [seq, headDim] cos and sin tables of RoPE for positions 0..seq-1. */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /**
   * additive attention mask, [1 or batch, 1, seq, seq]: 0 where allowed, -1e9 where masked (used by
   * the TF.js composition path of attention). Absent when the fused attention kernel runs: it masks
   * causally and by keyMask itself, and a cached [seq, seq] table per sequence length would only fill
   * (and fragment) the wasm heap.
   */
  mask?: tf.Tensor4D;
  /**
   * true when `mask` carries the sliding window (config.slidingWindow < seq): attention then runs as
   * TF.js ops with that mask, since the fused kernel masks causally and by keyMask only.
   */
  windowed?: boolean;
  /**
   * key padding mask [batch, seq] float32 (1 = token, 0 = padding), null without padding. The fused
   * attention needs it (the causal part is implicit). A context without this field whose `mask` has
   * a batch dimension runs attention as TF.js ops with that mask.
   */
  keyMask?: tf.Tensor2D | null;
  /** enables LoRA dropout */
  training: boolean;
  /** seed for LoRA dropout masks (deterministic per step) */
  seed?: number;
  /** called with every linear's input [n, in] (calibration: Wanda norms, SparseGPT Hessians) */
  capture?: (lin: Linear, x: tf.Tensor2D) => void;
}

/** One layer's keys and values for the tokens seen so far: [batch, kvHeads, T, headDim], after RoPE, before the GQA repeat. */
export interface LayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** The new tokens of a cached forward step ({@link LlamaModel.layerCached}). */
export interface CachedStep {
  batch: number;
  /** new tokens per sequence */
  seq: number;
  /** [seq, headDim] RoPE rows of the new tokens' absolute positions (LlamaModel.ropeRows) */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

/** The last W entries of a [B, KV, T, dh] key or value tensor along T (all of it when T <= W). */
function lastKeys(t: tf.Tensor4D, W: number): tf.Tensor4D {
  const T = t.shape[2];
  return T > W ? tf.slice(t, [0, 0, T - W, 0], [-1, -1, W, -1]) : t;
}

/**
 * Attention of one new query per sequence over all its keys (no mask: every cached key is earlier):
 * softmax(scale * q.k^T) . v with query head h on kv head floor(h / (H/KV)) (HF repeat_kv, folded).
 * q [B, H, 1, dh], k and v [B, KV, Tk, dh] -> [B, H*dh] (heads merged for o_proj).
 */
function singleQueryAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number): tf.Tensor2D {
  const [B, H, , dh] = q.shape,
    KV = k.shape[1];
  const qg = tf.reshape(tf.mul(q, scale), [B, KV, H / KV, dh]);
  const probs = tf.softmax(tf.matMul(qg, k, false, true));
  return tf.reshape(tf.matMul(probs, v), [B, H * dh]) as tf.Tensor2D;
}

/** Fills in defaults for a context. */
export type ContextOptions = { batch: number; seq: number; attentionMask?: ArrayLike<number>; training?: boolean; seed?: number };

/** A base weight as the model holds it: a float32 tensor in the heap, or a stored matrix outside it (in memory or its file). */
export type BaseWeight = tf.Tensor | StoredMatrix | FileMatrix;

function linearOf(name: string, get: (n: string) => BaseWeight | undefined, bias: boolean): Linear {
  const w = get(`${name}.weight`);
  if (!w) throw new Error(`missing tensor ${name}.weight`);
  const lin: Linear = w instanceof tf.Tensor ? { name, weight: w as tf.Tensor2D } : { name, weight: tf.zeros([0, 0]), stored: w };
  if (!bias) return lin;
  const b = get(`${name}.bias`);
  if (!b || !(b instanceof tf.Tensor)) throw new Error(`model weights: missing tensor ${name}.bias`);
  return { ...lin, bias: b as tf.Tensor1D };
}

/**
 * How {@link LlamaModel.load} keeps the frozen weights: float32 tensors in the heap, stored matrices outside it,
 * or (`lazy`) the layers' linears left in the file and read when used: for a model about to be compressed.
 */
export type WeightPlacement = 'auto' | 'heap' | 'stored' | 'lazy';

/**
 * Above this many float32 bytes of frozen weights `auto` keeps even an F32 model outside the heap: the wasm
 * heap holds at most 4 GiB, which must also fit a step's activations, LoRA state and the exit heads.
 */
export const HEAP_WEIGHT_LIMIT_BYTES = 1.5 * 2 ** 30;

/**
 * The base model: frozen weights as tf.Tensors (not Variables, so no gradient is ever taken for them)
 * and the forward pieces the trainer composes (embedding, one layer, norm, head).
 */
export class LlamaModel {
  readonly layers: DecoderLayer[];
  /** [vocab, hidden]: a tensor, or a stored matrix outside the heap (16-bit models) */
  readonly embedTokens: WeightMatrix;
  /** [hidden]; replaceable by a PEFT adapter's `modules_to_save`. */
  finalNorm: tf.Tensor1D;
  /** [vocab, hidden]; the same object as embedTokens when tied; replaceable like finalNorm. */
  lmHead: WeightMatrix;
  private ropeCache = new Map<number, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();
  private maskCache = new Map<number, tf.Tensor4D>();

  constructor(
    readonly config: LlamaConfig,
    tensors: Map<string, BaseWeight>,
  ) {
    const get = (n: string) => tensors.get(n);
    const need = (n: string) => {
      const t = tensors.get(n);
      if (!t) throw new Error(`model weights: missing tensor ${n}`);
      return t;
    };
    const needTensor = (n: string) => {
      const t = need(n);
      if (!(t instanceof tf.Tensor)) throw new Error(`model weights: ${n} must be a tensor`);
      return t;
    };
    this.embedTokens = need('model.embed_tokens.weight') as WeightMatrix;
    this.finalNorm = needTensor('model.norm.weight') as tf.Tensor1D;
    this.lmHead = (config.tieWordEmbeddings ? (get('lm_head.weight') ?? this.embedTokens) : need('lm_head.weight')) as WeightMatrix;
    const { hiddenSize: d, vocabSize: v } = config;
    const [er, ec] = isTensor(this.embedTokens) ? this.embedTokens.shape : [this.embedTokens.rows, this.embedTokens.cols];
    if (er !== v || ec !== d) throw new Error(`model.embed_tokens.weight has shape [${er}, ${ec}], config says [${v}, ${d}]`);
    this.layers = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `model.layers.${i}`;
      const linears = {} as Record<LinearName, Linear>;
      for (const n of LINEAR_NAMES) {
        const isAttn = n === 'q_proj' || n === 'k_proj' || n === 'v_proj' || n === 'o_proj';
        linears[n] = linearOf(`${p}.${isAttn ? 'self_attn' : 'mlp'}.${n}`, get, linearHasBias(config, n));
      }
      this.layers.push({
        index: i,
        inputNorm: needTensor(`${p}.input_layernorm.weight`) as tf.Tensor1D,
        postNorm: needTensor(`${p}.post_attention_layernorm.weight`) as tf.Tensor1D,
        linears,
      });
    }
  }

  /**
   * Loads a Hugging Face LLaMA folder (`config.json`, `model.safetensors` or sharded index; F32/F16/BF16),
   * tensor by tensor. Norms and biases become float32 tensors. The embedding, lm_head and the layers'
   * linears become float32 tensors (`heap`) or stay in their stored precision outside the TF.js heap
   * (`stored`, read by backend/frozen.ts); `auto` keeps F16/BF16 models stored, and F32 models in the heap
   * unless their weights exceed {@link HEAP_WEIGHT_LIMIT_BYTES}. The whole model never exists in float32.
   * @throws ModelConfigError / SafetensorsError / Error naming a missing tensor.
   */
  static load(dir: string, opts: { weights?: WeightPlacement } = {}): LlamaModel {
    const config = loadLlamaConfig(dir);
    const placement = opts.weights ?? 'auto';
    const tensors = new Map<string, BaseWeight>();
    const fileMatrix = (t: TensorEntry) =>
      t.shape.length === 2 && t.name.endsWith('proj.weight') && ['BF16', 'F16', 'F32'].includes(t.dtype);
    const lazy = new Set<string>();
    if (placement === 'lazy') {
      for (const t of readWeightIndex(dir).tensors.values())
        if (fileMatrix(t)) {
          lazy.add(t.name);
          tensors.set(t.name, {
            dtype: t.dtype as StoredMatrix['dtype'],
            rows: t.shape[0],
            cols: t.shape[1],
            file: t.file,
            begin: t.begin,
          });
        }
    }
    readWeightTensors(
      dir,
      (name, t, total) => {
        if (name.includes('rotary_emb')) return;
        const matrix =
          t.shape.length === 2 && (name.endsWith('proj.weight') || name === 'model.embed_tokens.weight' || name === 'lm_head.weight');
        const stored =
          matrix &&
          (placement === 'stored' ||
            placement === 'lazy' ||
            (placement === 'auto' && (t.dtype === 'BF16' || t.dtype === 'F16' || total.f32Bytes > HEAP_WEIGHT_LIMIT_BYTES)));
        if (stored && (t.dtype === 'BF16' || t.dtype === 'F16' || t.dtype === 'F32')) {
          tensors.set(name, { dtype: t.dtype, rows: t.shape[0], cols: t.shape[1], data: t.raw as Float32Array | Uint16Array });
        } else tensors.set(name, tf.tensor(t.widened(), t.shape, 'float32'));
      },
      (name) => !lazy.has(name),
    );
    return new LlamaModel(config, tensors);
  }

  /** Builds a model from decoded tensors (float32 on the current backend). */
  static fromNamedTensors(config: LlamaConfig, raw: Map<string, NamedTensor>): LlamaModel {
    const tensors = new Map<string, tf.Tensor>();
    for (const [name, t] of raw) {
      if (name.includes('rotary_emb')) continue;
      tensors.set(name, tf.tensor(t.data instanceof Float32Array ? t.data : Float32Array.from(t.data), t.shape, 'float32'));
    }
    return new LlamaModel(config, tensors);
  }

  /**
   * Every dense base weight by HF name (tied head listed once, as the embedding): tensors, or stored
   * matrices outside the heap. LUC-packed linears are not listed (their placeholder tensor is empty).
   */
  namedWeights(): Map<string, BaseWeight> {
    const m = new Map<string, BaseWeight>();
    const dense = (w: WeightMatrix) => w as tf.Tensor | StoredMatrix;
    m.set('model.embed_tokens.weight', dense(this.embedTokens));
    for (const l of this.layers) {
      m.set(`model.layers.${l.index}.input_layernorm.weight`, l.inputNorm);
      m.set(`model.layers.${l.index}.post_attention_layernorm.weight`, l.postNorm);
      for (const lin of Object.values(l.linears)) {
        if (!lin.packed) m.set(`${lin.name}.weight`, lin.stored ?? lin.weight);
        if (lin.bias) m.set(`${lin.name}.bias`, lin.bias);
      }
    }
    m.set('model.norm.weight', this.finalNorm);
    if (this.lmHead !== this.embedTokens) m.set('lm_head.weight', dense(this.lmHead));
    return m;
  }

  /** Bytes of the frozen weights kept outside the TF.js heap (stored matrices and LUC-packed linears). */
  storedBytes(): number {
    let b = frozenBytes(this.embedTokens) + (this.lmHead !== this.embedTokens ? frozenBytes(this.lmHead) : 0);
    for (const lin of this.linears().values()) {
      const ext = lin.packed ?? lin.stored;
      if (ext) b += frozenBytes(ext);
    }
    return b;
  }

  /** Every linear by HF module path. */
  linears(): Map<string, Linear> {
    const m = new Map<string, Linear>();
    for (const l of this.layers) for (const lin of Object.values(l.linears)) m.set(lin.name, lin);
    return m;
  }

  /** Total parameter count (tied head counted once). */
  paramCount(): number {
    let n = 0;
    for (const t of this.namedWeights().values()) n += t instanceof tf.Tensor ? t.size : t.rows * t.cols;
    for (const lin of this.linears().values()) if (lin.packed) n += lin.packed.rows * lin.packed.cols;
    return n;
  }

  /**
   * RoPE tables for positions 0..seq-1 (HF LlamaRotaryEmbedding): freqs = t * inv_freq (ropeInvFreq:
   * theta^(-2i/headDim), scaled per rope_scaling), emb = cat(freqs, freqs); cached per seq length.
   * Returns [seq, headDim] cos and sin.
   */
  ropeTables(seq: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    let c = this.ropeCache.get(seq);
    if (c) return c;
    const r = this.ropeRows(0, seq);
    c = { cos: tf.keep(r.cos), sin: tf.keep(r.sin) };
    this.ropeCache.set(seq, c);
    return c;
  }

  /**
   * RoPE tables for positions pos..pos+count-1, as rows of {@link ropeTables} (same values), not
   * cached: a decoding step needs one new row per token. Returns [count, headDim] cos and sin; caller disposes.
   */
  ropeRows(pos: number, count: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    const { headDim } = this.config;
    const half = headDim / 2;
    // float32 inv_freq as in HF (computed in float, then multiplied by an int position).
    const invFreq = ropeInvFreq(this.config);
    const cos = new Float32Array(count * headDim),
      sin = new Float32Array(count * headDim);
    for (let r = 0; r < count; r++) {
      for (let i = 0; i < half; i++) {
        const a = Math.fround((pos + r) * invFreq[i]);
        cos[r * headDim + i] = cos[r * headDim + i + half] = Math.cos(a);
        sin[r * headDim + i] = sin[r * headDim + i + half] = Math.sin(a);
      }
    }
    return { cos: tf.tensor2d(cos, [count, headDim]), sin: tf.tensor2d(sin, [count, headDim]) };
  }

  /**
   * Additive attention mask, MASK_VALUE where query i may not see key j: j > i (causal), j <= i - W
   * with the config's sliding window W (Mistral), or key j is padding. [1,1,seq,seq] (cached), or
   * [batch,1,seq,seq] when a key padding mask [batch*seq] (1 = token) is given.
   */
  attentionMask(seq: number, batch: number, keyMask?: ArrayLike<number>): tf.Tensor4D {
    if (!keyMask) {
      let m = this.maskCache.get(seq);
      if (!m) {
        m = tf.keep(this.windowMask(seq));
        this.maskCache.set(seq, m);
      }
      return m;
    }
    const a = new Float32Array(batch * seq * seq);
    for (let b = 0; b < batch; b++) this.fillMask(a, b * seq * seq, seq, (j) => !!keyMask[b * seq + j]);
    return tf.tensor4d(a, [batch, 1, seq, seq]);
  }

  /** The causal (and sliding-window) mask of {@link attentionMask} without padding, not cached: [1,1,seq,seq]. */
  windowMask(seq: number): tf.Tensor4D {
    const a = new Float32Array(seq * seq);
    this.fillMask(a, 0, seq, () => true);
    return tf.tensor4d(a, [1, 1, seq, seq]);
  }

  private fillMask(a: Float32Array, at: number, seq: number, key: (j: number) => boolean): void {
    const W = this.config.slidingWindow ?? seq;
    for (let i = 0; i < seq; i++) for (let j = 0; j < seq; j++) if (j > i || j <= i - W || !key(j)) a[at + i * seq + j] = MASK_VALUE;
  }

  /** Builds a forward context (RoPE tables and mask) for a batch. */
  context(o: ContextOptions): ForwardContext {
    const { cos, sin } = this.ropeTables(o.seq);
    const padded = o.attentionMask && Array.prototype.some.call(o.attentionMask, (x: number) => !x);
    const keyMask = padded
      ? tf.tensor2d(
          Float32Array.from(o.attentionMask!, (x) => (x ? 1 : 0)),
          [o.batch, o.seq],
        )
      : null;
    const ctx: ForwardContext = { batch: o.batch, seq: o.seq, cos, sin, keyMask, training: o.training ?? false, seed: o.seed };
    const W = this.config.slidingWindow;
    if (W != null && W < o.seq) ctx.windowed = true;
    // Only the composition path of attention reads the additive mask (the fused kernel masks causally and by keyMask).
    if (ctx.windowed || !fusedKernelsActive()) ctx.mask = this.attentionMask(o.seq, o.batch, padded ? o.attentionMask : undefined);
    return ctx;
  }

  /** Token embedding: ids [batch*seq] int32 -> [batch*seq, hidden]. @throws RangeError for an id outside the vocabulary (stored embedding). */
  embed(ids: tf.Tensor1D): tf.Tensor2D {
    const e = this.embedTokens;
    if (isTensor(e)) return tf.gather(e, ids) as tf.Tensor2D;
    return tf.tensor2d(gatherRows(e, ids.dataSync()), [ids.size, e.cols]);
  }

  /** lm_head logits of normalised states x [n, hidden] -> [n, vocab]. */
  headLogits(x: tf.Tensor2D): tf.Tensor2D {
    return matMulT(x, this.lmHead);
  }

  /** RMSNorm (HF LlamaRMSNorm): x * rsqrt(mean(x^2) + eps) * w, over the last axis. x [n, hidden]. */
  rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D): tf.Tensor2D {
    return fusedRmsNorm(x, w, this.config.rmsNormEps);
  }

  /**
   * {@link rmsNorm} for inference: the same kernel and values, run without the gradient wrapper
   * (tf.customGrad's bookkeeping costs more than the kernel on a single decoded token). Not differentiable.
   */
  rmsNormInference(x: tf.Tensor2D, w: tf.Tensor1D): tf.Tensor2D {
    if (!fusedKernelsActive()) return this.rmsNorm(x, w);
    const inputs = { x, w } as unknown as tf.NamedTensorMap;
    const [y, rstd] = tf.engine().runKernel(FUSED_KERNELS.rmsNorm, inputs, { eps: this.config.rmsNormEps }) as tf.Tensor[];
    rstd.dispose();
    return y as tf.Tensor2D;
  }

  /**
   * y = x W^T (+ b) (+ scale * dropout(x) A^T B^T when `useLora` and the linear has LoRA).
   * x [n, in] -> [n, out].
   */
  linear(lin: Linear, x: tf.Tensor2D, useLora: boolean, ctx?: ForwardContext, salt = 0): tf.Tensor2D {
    ctx?.capture?.(lin, x);
    const xq = lin.actBits !== undefined && lin.actBits < 16 ? fakeQuantActivations(x, lin.actBits) : x;
    const lora = useLora ? lin.lora : undefined;
    const rate = ctx?.training && lora ? lora.dropout : 0;
    const seed = ctx?.seed === undefined ? undefined : ctx.seed * 7919 + salt;
    const ext = lin.packed ?? lin.stored;
    let y: tf.Tensor;
    if (ext && lora && xq === x) {
      // Frozen weight outside the heap: its product widens it block by block (backend/frozen.ts), the
      // LoRA branch beside it in the same op.
      y = frozenLoraLinear(x, ext, lora.A as tf.Tensor2D, lora.B as tf.Tensor2D, { scale: lora.scale, dropout: rate, seed });
    } else if (ext) {
      y = frozenMatMulT(xq, ext);
      if (lora) {
        const xin = rate > 0 ? dropout(x, rate, seed) : x;
        y = tf.add(y, tf.matMul(tf.mul(tf.matMul(xin, lora.A, false, true), lora.scale), lora.B, false, true));
      }
    } else if (lora && xq === x) {
      const W = lin.weight;
      // Main product + LoRA branch (dropout, A, B, scale, add) as one fused op (TF.js ops without the addon).
      y = loraLinear(x, W, lora.A as tf.Tensor2D, lora.B as tf.Tensor2D, { scale: lora.scale, dropout: rate, seed });
    } else {
      y = tf.matMul(xq, lin.weight, false, true);
      if (lora) {
        const xin = rate > 0 ? dropout(x, rate, seed) : x;
        // scale applied to the [n, r] product rather than the [n, out] one (same value up to rounding)
        const low = tf.mul(tf.matMul(xin, lora.A, false, true), lora.scale);
        y = tf.add(y, tf.matMul(low, lora.B, false, true));
      }
    }
    if (lin.bias) y = tf.add(y, lin.bias);
    return y as tf.Tensor2D;
  }

  /**
   * {@link linear} for inference (no dropout, no capture). One row x [1, in] runs as (W x^T)^T (+ scale
   * (B (A x^T))^T): for a single row OpenBLAS streams W faster this way round than as x W^T. Several rows,
   * packed and fake-quantized linears run as {@link linear}. Returns [n, out].
   */
  linearInference(lin: Linear, x: tf.Tensor2D, useLora: boolean): tf.Tensor2D {
    const quantized = lin.actBits !== undefined && lin.actBits < 16;
    if (x.shape[0] !== 1 || lin.packed || lin.stored || quantized) return this.linear(lin, x, useLora);
    const lora = useLora ? lin.lora : undefined;
    let yT = tf.matMul(lin.weight, x, false, true); // [out, 1]
    if (lora) yT = tf.add(yT, tf.matMul(lora.B, tf.mul(tf.matMul(lora.A, x, false, true), lora.scale)));
    const y = tf.reshape(yT, [1, -1]) as tf.Tensor2D;
    return lin.bias ? (tf.add(y, lin.bias) as tf.Tensor2D) : y;
  }

  /**
   * One LlamaDecoderLayer: h + attn(norm(h)), then + mlp(norm(.)). h [batch*seq, hidden] -> same.
   * @param useLora whether this layer's LoRA branches are active.
   */
  layer(i: number, h: tf.Tensor2D, ctx: ForwardContext, useLora: boolean): tf.Tensor2D {
    // One tidy per layer: its temporaries (and just-in-time dequantized weights) go as soon as it
    // returns, instead of at the end of the caller's scope (TF.js keeps what backward needs as saved
    // clones), which lowers a training step's peak tensor memory.
    return tf.tidy(() => this.layerOps(i, h, ctx, useLora));
  }

  private layerOps(i: number, h: tf.Tensor2D, ctx: ForwardContext, useLora: boolean): tf.Tensor2D {
    const L = this.layers[i];
    const { numAttentionHeads: H, numKeyValueHeads: KV, headDim: dh } = this.config;
    const { batch: B, seq: T } = ctx;
    const lin = L.linears;
    // The attention block in a tidy of its own: its temporaries are gone before the MLP block runs, so
    // the layer's peak holds one block's temporaries, not both (backward keeps its saved clones).
    const h1 = tf.tidy(() => {
      const x = this.rmsNorm(h, L.inputNorm);
      const shape = { batch: B, seq: T, headDim: dh };
      // [B*T, n*dh] projections -> [B, n, T, dh] heads, RoPE on q and k (HF apply_rotary_pos_emb).
      const q = ropeHeads(this.linear(lin.q_proj, x, useLora, ctx, i * 16 + 1), { ...shape, heads: H, cos: ctx.cos, sin: ctx.sin });
      const k = ropeHeads(this.linear(lin.k_proj, x, useLora, ctx, i * 16 + 2), { ...shape, heads: KV, cos: ctx.cos, sin: ctx.sin });
      const v = ropeHeads(this.linear(lin.v_proj, x, useLora, ctx, i * 16 + 3), { ...shape, heads: KV });
      // Causal GQA core, heads merged back to [B*T, H*dh] for o_proj.
      const attnOpts = { scale: 1 / Math.sqrt(dh), keyMask: ctx.keyMask, merged: true, additiveMask: ctx.mask };
      const legacyMask = ctx.keyMask === undefined && ctx.mask !== undefined && ctx.mask.shape[0] !== 1; // hand-built padded context
      const ops = legacyMask || ctx.windowed;
      const merged = (ops ? attentionOps(q, k, v, attnOpts) : attention(q, k, v, attnOpts)) as tf.Tensor2D;
      return tf.add(h, this.linear(lin.o_proj, merged, useLora, ctx, i * 16 + 4)) as tf.Tensor2D;
    });
    return this.mlpBlock(i, h1, ctx, useLora, false);
  }

  /** The MLP half of layer i: h1 + down(swiglu(gate(norm(h1)), up(norm(h1)))). h1 [n, hidden] -> same. */
  private mlpBlock(i: number, h1: tf.Tensor2D, ctx: ForwardContext | undefined, useLora: boolean, inference: boolean): tf.Tensor2D {
    const L = this.layers[i];
    const lin = L.linears;
    const x2 = inference ? this.rmsNormInference(h1, L.postNorm) : this.rmsNorm(h1, L.postNorm);
    const linear = (l: Linear, x: tf.Tensor2D, salt: number) =>
      inference ? this.linearInference(l, x, useLora) : this.linear(l, x, useLora, ctx, i * 16 + salt);
    const act = swiglu(linear(lin.gate_proj, x2, 5), linear(lin.up_proj, x2, 6));
    return tf.add(h1, linear(lin.down_proj, act, 7)) as tf.Tensor2D;
  }

  /**
   * One decoder layer for new tokens (at the positions of `step`'s RoPE rows) against the keys/values
   * of the tokens before them (HF `past_key_values`, `DynamicCache`): inference only (no dropout, no capture).
   * Either a prefill (no `past`: causal over the new tokens, as {@link layer}) or one token (seq 1,
   * attending to every cached key). With a sliding window W (Mistral) a query sees the last W keys,
   * and the returned cache keeps only the last W.
   * @param h [batch*seq, hidden] @param step batch, seq (new tokens) and their RoPE rows ([seq, headDim], see ropeRows)
   * @param past this layer's keys/values of the earlier tokens, [batch, kvHeads, P, headDim] after RoPE
   * @returns the layer output [batch*seq, hidden] and the keys/values to keep, [batch, kvHeads, min(P+seq, W), headDim]. Caller disposes.
   * @throws Error for more than one new token with a past.
   */
  layerCached(i: number, h: tf.Tensor2D, step: CachedStep, past: LayerKV | null, useLora: boolean): { h: tf.Tensor2D; kv: LayerKV } {
    if (past && step.seq !== 1) throw new Error(`layerCached: ${step.seq} new tokens after a cache (one at a time)`);
    return tf.tidy(() => {
      const lin = this.layers[i].linears;
      const { numAttentionHeads: H, numKeyValueHeads: KV, headDim: dh } = this.config;
      const W = this.config.slidingWindow ?? Number.POSITIVE_INFINITY;
      const shape = { batch: step.batch, seq: step.seq, headDim: dh };
      const x = this.rmsNormInference(h, this.layers[i].inputNorm);
      const q = ropeHeads(this.linearInference(lin.q_proj, x, useLora), { ...shape, heads: H, cos: step.cos, sin: step.sin });
      let k = ropeHeads(this.linearInference(lin.k_proj, x, useLora), { ...shape, heads: KV, cos: step.cos, sin: step.sin });
      let v = ropeHeads(this.linearInference(lin.v_proj, x, useLora), { ...shape, heads: KV });
      const scale = 1 / Math.sqrt(dh);
      let merged: tf.Tensor2D;
      if (past) {
        k = lastKeys(tf.concat([past.k, k], 2), W);
        v = lastKeys(tf.concat([past.v, v], 2), W);
        merged = singleQueryAttention(q, k, v, scale);
      } else if (step.seq > W) {
        merged = attentionOps(q, k, v, { scale, merged: true, additiveMask: this.windowMask(step.seq) }) as tf.Tensor2D;
      } else {
        merged = attention(q, k, v, { scale, keyMask: null, merged: true }) as tf.Tensor2D;
      }
      const h1 = tf.add(h, this.linearInference(lin.o_proj, merged, useLora)) as tf.Tensor2D;
      return { h: this.mlpBlock(i, h1, undefined, useLora, true), kv: { k: lastKeys(k, W), v: lastKeys(v, W) } };
    });
  }

  /**
   * Full forward of the base model (optionally with LoRA on the layers `loraLayers` selects).
   * @param ids [batch][seq] token ids.
   * @returns logits [batch, seq, vocab] and, when asked, every hidden state (embedding output, then each
   *   layer's output before the final norm), each [batch, seq, hidden]. Caller disposes.
   */
  forward(
    ids: number[][],
    opts: { lora?: boolean | ((layer: number) => boolean); hiddenStates?: boolean; attentionMask?: number[][] } = {},
  ): { logits: tf.Tensor3D; hiddenStates: tf.Tensor3D[] } {
    const B = ids.length,
      T = ids[0].length;
    const flat = Int32Array.from(ids.flat());
    const useLora = typeof opts.lora === 'function' ? opts.lora : () => opts.lora === true;
    const hiddenStates: tf.Tensor3D[] = [];
    const logits = tf.tidy(() => {
      const ctx = this.context({ batch: B, seq: T, attentionMask: opts.attentionMask?.flat() });
      let h = this.embed(tf.tensor1d(flat, 'int32'));
      if (opts.hiddenStates) hiddenStates.push(tf.keep(tf.reshape(h, [B, T, -1])) as tf.Tensor3D);
      for (let i = 0; i < this.layers.length; i++) {
        h = this.layer(i, h, ctx, useLora(i));
        if (opts.hiddenStates) hiddenStates.push(tf.keep(tf.reshape(h, [B, T, -1])) as tf.Tensor3D);
      }
      const out = this.headLogits(this.rmsNorm(h, this.finalNorm));
      return tf.reshape(out, [B, T, this.config.vocabSize]) as tf.Tensor3D;
    });
    return { logits, hiddenStates };
  }

  /** Frees every tensor the model holds (weights, LoRA, caches). */
  dispose(): void {
    for (const t of this.namedWeights().values()) if (t instanceof tf.Tensor) t.dispose();
    for (const lin of this.linears().values()) {
      lin.weight.dispose();
      lin.lora?.A.dispose();
      lin.lora?.B.dispose();
    }
    if (this.lmHead !== this.embedTokens && isTensor(this.lmHead) && !this.lmHead.isDisposed) this.lmHead.dispose();
    for (const c of this.ropeCache.values()) {
      c.cos.dispose();
      c.sin.dispose();
    }
    for (const m of this.maskCache.values()) m.dispose();
  }
}

/**
 * Mean next-token cross-entropy (HF causal-LM loss): logits[:, t] predicts labels[:, t+1];
 * positions whose target is -100 are ignored. logits [batch, seq, vocab], labels [batch][seq].
 */
export function causalLmLoss(logits: tf.Tensor3D, labels: number[][]): tf.Scalar {
  return tf.tidy(() => {
    const [B, T, V] = logits.shape;
    const rows: number[] = [],
      targets: number[] = [];
    for (let b = 0; b < B; b++)
      for (let t = 0; t + 1 < T; t++) {
        const y = labels[b][t + 1];
        if (y !== IGNORE_INDEX) {
          rows.push(b * T + t);
          targets.push(y);
        }
      }
    if (!rows.length) return tf.scalar(0);
    const sel = tf.gather(tf.reshape(logits, [B * T, V]), tf.tensor1d(rows, 'int32'));
    const logp = tf.logSoftmax(sel);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(targets, 'int32'), V)), -1);
    return tf.neg(tf.mean(picked)) as tf.Scalar;
  });
}
