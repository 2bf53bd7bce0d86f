/**
 * LoRA (Hu et al., ICLR 2022) in the Hugging Face PEFT layout: `adapter_config.json` +
 * `adapter_model.safetensors` with tensors named
 * `base_model.model.<module>.lora_A.weight` [r, in] and `...lora_B.weight` [out, r], scaling lora_alpha / r
 * (peft `tuners/lora/layer.py`), and `modules_to_save` stored as `base_model.model.<module>.weight`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { writeSafetensorsStream, type TensorSpec } from '../io/safetensors-writer.js';
import { LINEAR_NAMES } from '@edgetune/core';
import { weightShape, type Linear, type LlamaModel } from './llama.js';
import { matrixShape, type WeightMatrix } from '../backend/frozen.js';
import type { Rng } from '../util/rng.js';

/** The subset of PEFT's LoraConfig we honour. */
export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** short names (`q_proj`) or full module paths; PEFT matches a suffix. */
  targetModules: string[];
  /** restrict LoRA to these decoder layers (PEFT `layers_to_transform`); all when absent. */
  layersToTransform?: number[];
  /** modules replaced wholesale by trained copies (e.g. `lm_head`, `model.norm`). */
  modulesToSave?: string[];
}

/** Error for an adapter folder that is missing, malformed, or does not fit the base model. */
export class AdapterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdapterError';
  }
}

export const DEFAULT_LORA: LoraConfig = { r: 8, alpha: 16, dropout: 0.05, targetModules: [...LINEAR_NAMES] };

/** PEFT tensor name of a LoRA factor. */
export function peftName(module: string, which: 'lora_A' | 'lora_B'): string {
  return `base_model.model.${module}.${which}.weight`;
}

function layerOf(module: string): number {
  const m = /\.layers\.(\d+)\./.exec(module);
  return m ? Number(m[1]) : -1;
}

function targets(cfg: LoraConfig, module: string): boolean {
  const layer = layerOf(module);
  if (cfg.layersToTransform && !cfg.layersToTransform.includes(layer)) return false;
  return cfg.targetModules.some((t) => module === t || module.endsWith(`.${t}`));
}

/**
 * Attaches fresh LoRA factors to every targeted linear: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
 * kaiming_uniform_(a=sqrt(5))), B = 0, so the adapted model starts equal to the base.
 * @returns the linears that got LoRA.
 */
export function attachLora(model: LlamaModel, cfg: LoraConfig, rng: Rng): Linear[] {
  const out: Linear[] = [];
  for (const lin of model.linears().values()) {
    if (!targets(cfg, lin.name)) continue;
    const [outDim, inDim] = weightShape(lin);
    const bound = 1 / Math.sqrt(inDim);
    const a = new Float32Array(cfg.r * inDim);
    for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
    lin.lora?.A.dispose();
    lin.lora?.B.dispose();
    lin.lora = {
      A: tf.variable(tf.tensor2d(a, [cfg.r, inDim]), true),
      B: tf.variable(tf.zeros([outDim, cfg.r]), true),
      scale: cfg.alpha / cfg.r,
      dropout: cfg.dropout,
    };
    out.push(lin);
  }
  return out;
}

/** Reads `adapter_config.json` into a LoraConfig. @throws AdapterError */
export function readAdapterConfig(dir: string): LoraConfig & { raw: Record<string, unknown> } {
  const file = join(dir, 'adapter_config.json');
  if (!existsSync(file)) throw new AdapterError(`no adapter_config.json in ${dir}`);
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (raw.peft_type !== undefined && raw.peft_type !== 'LORA') throw new AdapterError(`${file}: peft_type ${raw.peft_type} is not LORA`);
  if (raw.use_dora) throw new AdapterError(`${file}: DoRA adapters are not supported`);
  if (raw.fan_in_fan_out) throw new AdapterError(`${file}: fan_in_fan_out adapters are not supported`);
  const r = Number(raw.r);
  const tm = raw.target_modules;
  const targetModules = typeof tm === 'string' ? [tm] : Array.isArray(tm) ? (tm as string[]) : [];
  const ltt = raw.layers_to_transform;
  return {
    r,
    alpha: Number(raw.lora_alpha ?? r),
    dropout: Number(raw.lora_dropout ?? 0),
    targetModules,
    layersToTransform: typeof ltt === 'number' ? [ltt] : Array.isArray(ltt) ? (ltt as number[]) : undefined,
    modulesToSave: Array.isArray(raw.modules_to_save) ? (raw.modules_to_save as string[]) : undefined,
    raw,
  };
}

/**
 * Applies a PEFT LoRA adapter folder to the model the way PEFT does at inference: every LoRA tensor in
 * the file becomes active on its module (scale lora_alpha / r, per-module `rank_pattern`/`alpha_pattern`
 * honoured), and `modules_to_save` tensors replace their modules (`lm_head`, `model.norm`,
 * `model.layers.N.*_layernorm`).
 * @throws AdapterError for a missing file, an unknown module, or a shape that does not fit.
 */
export function applyPeftAdapter(model: LlamaModel, dir: string): { config: LoraConfig; loraModules: string[]; replaced: string[] } {
  const cfg = readAdapterConfig(dir);
  const file = join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) throw new AdapterError(`no adapter_model.safetensors in ${dir}`);
  const { tensors } = readSafetensors(file);
  const linears = model.linears();
  const rankPattern = (cfg.raw.rank_pattern ?? {}) as Record<string, number>;
  const alphaPattern = (cfg.raw.alpha_pattern ?? {}) as Record<string, number>;
  const pattern = (p: Record<string, number>, module: string) =>
    Object.entries(p).find(([k]) => module === k || module.endsWith(`.${k}`))?.[1];
  const loraModules: string[] = [],
    replaced: string[] = [];
  const pending = new Map<string, { A?: Float32Array; B?: Float32Array; aShape?: number[]; bShape?: number[] }>();
  for (const [name, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.(lora_A|lora_B)(?:\.default)?\.weight$/.exec(name);
    if (m) {
      const e = pending.get(m[1]) ?? {};
      if (m[2] === 'lora_A') {
        e.A = t.data as Float32Array;
        e.aShape = t.shape;
      } else {
        e.B = t.data as Float32Array;
        e.bShape = t.shape;
      }
      pending.set(m[1], e);
      continue;
    }
    const s = /^base_model\.model\.(.+)\.weight$/.exec(name);
    if (s) {
      replaceModule(model, s[1], t.data as Float32Array, t.shape);
      replaced.push(s[1]);
      continue;
    }
    throw new AdapterError(`${file}: unexpected tensor ${name}`);
  }
  for (const [module, e] of pending) {
    const lin = linears.get(module);
    if (!lin) throw new AdapterError(`${file}: LoRA on ${module}, which the base model does not have`);
    if (!e.A || !e.B || !e.aShape || !e.bShape) throw new AdapterError(`${file}: ${module} has only one of lora_A / lora_B`);
    const [outDim, inDim] = weightShape(lin);
    const r = e.aShape[0];
    if (e.aShape[1] !== inDim || e.bShape[0] !== outDim || e.bShape[1] !== r) {
      throw new AdapterError(`${file}: ${module} lora_A [${e.aShape}] / lora_B [${e.bShape}] do not fit weight [${outDim}, ${inDim}]`);
    }
    const alpha = pattern(alphaPattern, module) ?? cfg.alpha;
    const rank = pattern(rankPattern, module) ?? r;
    lin.lora?.A.dispose();
    lin.lora?.B.dispose();
    lin.lora = {
      A: tf.variable(tf.tensor2d(e.A, [r, inDim]), true),
      B: tf.variable(tf.tensor2d(e.B, [outDim, r]), true),
      scale: cfg.raw.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank,
      dropout: cfg.dropout,
    };
    loraModules.push(module);
  }
  return { config: cfg, loraModules, replaced };
}

function replaceModule(model: LlamaModel, module: string, data: Float32Array, shape: number[]): void {
  const check = (t: tf.Tensor | WeightMatrix) => {
    const s = t instanceof tf.Tensor ? t.shape : matrixShape(t);
    if (s.join() !== shape.join()) throw new AdapterError(`modules_to_save ${module}: shape [${shape}] does not fit [${s}]`);
  };
  if (module === 'lm_head') {
    check(model.lmHead);
    model.lmHead = tf.tensor2d(data, shape as [number, number]);
    return;
  }
  if (module === 'model.norm') {
    check(model.finalNorm);
    model.finalNorm = tf.tensor1d(data);
    return;
  }
  const m = /^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm)$/.exec(module);
  if (m && model.layers[Number(m[1])]) {
    const L = model.layers[Number(m[1])];
    const key = m[2] === 'input_layernorm' ? 'inputNorm' : 'postNorm';
    check(L[key]);
    L[key] = tf.tensor1d(data);
    return;
  }
  throw new AdapterError(`modules_to_save: ${module} is not supported (lm_head, model.norm and layer norms are)`);
}

/**
 * The LoRA factors of `linears` by PEFT tensor name, ready for the safetensors writer: each is read out of the
 * TF.js heap when the writer reaches it, so a model's factors are never all copied at once.
 */
export function loraTensors(linears: Iterable<Linear>): Map<string, TensorToWrite> {
  const tensors = new Map<string, TensorToWrite>();
  for (const lin of linears) {
    const lora = lin.lora;
    if (!lora) continue;
    tensors.set(peftName(lin.name, 'lora_A'), { shape: lora.A.shape, dtype: 'F32', data: () => lora.A.dataSync() as Float32Array });
    tensors.set(peftName(lin.name, 'lora_B'), { shape: lora.B.shape, dtype: 'F32', data: () => lora.B.dataSync() as Float32Array });
  }
  return tensors;
}

/** A float32 [rows, cols] matrix too large to hold whole (a merged lm_head), produced a block of rows at a time. */
export interface RowSource {
  shape: [number, number];
  /** rows [r0, r0 + n) as float32 [n * cols] */
  rows(r0: number, n: number): Float32Array;
}

/**
 * Writes a PEFT adapter folder: `adapter_config.json` and `adapter_model.safetensors` with the LoRA
 * factors of `linears` and the `modulesToSave` tensors (keyed by module path, stored as
 * `base_model.model.<module>.weight`). The file is streamed: a {@link RowSource} is asked for its rows
 * chunk by chunk, so it never exists whole.
 */
export function savePeftAdapter(
  dir: string,
  cfg: LoraConfig,
  linears: Linear[],
  modulesToSave: Map<string, tf.Tensor | RowSource> = new Map(),
  extraConfig: Record<string, unknown> = {},
): void {
  mkdirSync(dir, { recursive: true });
  // Tensors are read out of the TF.js heap when the writer reaches them, one at a time (the one being written is
  // kept for its remaining chunks), so the factors of a whole model are never all copied at once.
  const reads = new Map<string, () => Float32Array>();
  const sources = new Map<string, RowSource>();
  const specs: TensorSpec[] = [];
  for (const [name, t] of loraTensors(linears)) {
    reads.set(name, t.data as () => Float32Array);
    specs.push({ name, dtype: 'F32', shape: t.shape });
  }
  for (const [module, t] of modulesToSave) {
    const name = `base_model.model.${module}.weight`;
    if (t instanceof tf.Tensor) reads.set(name, () => t.dataSync() as Float32Array);
    else sources.set(name, t);
    specs.push({ name, dtype: 'F32', shape: [...t.shape] });
  }
  specs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let current: { name: string; bytes: Uint8Array } | null = null;
  writeSafetensorsStream(
    join(dir, 'adapter_model.safetensors'),
    specs,
    (t, chunk, off) => {
      const read = reads.get(t.name);
      if (read) {
        if (current?.name !== t.name) {
          const d = read();
          current = { name: t.name, bytes: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
        }
        return chunk.set(current.bytes.subarray(off, off + chunk.byteLength));
      }
      const src = sources.get(t.name) as RowSource;
      const rowBytes = src.shape[1] * 4;
      const r0 = Math.floor(off / rowBytes),
        r1 = Math.ceil((off + chunk.byteLength) / rowBytes);
      const rows = src.rows(r0, r1 - r0);
      const rb = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
      chunk.set(rb.subarray(off - r0 * rowBytes, off - r0 * rowBytes + chunk.byteLength));
    },
    { metadata: { format: 'pt' } },
  );
  const config: Record<string, unknown> = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: cfg.r,
    lora_alpha: cfg.alpha,
    lora_dropout: cfg.dropout,
    target_modules: cfg.targetModules,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    ...(cfg.layersToTransform ? { layers_to_transform: cfg.layersToTransform, layers_pattern: 'layers' } : {}),
    ...(cfg.modulesToSave?.length ? { modules_to_save: cfg.modulesToSave } : {}),
    ...extraConfig,
  };
  writeFileSync(join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
