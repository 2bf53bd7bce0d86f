/**
 * What a tuning run leaves behind, and how to load it back:
 * - `edge_llm.json` + `edge_llm.safetensors`: the voted model — every window's LoRA (PEFT names),
 *   every exit's norm and head (`exits.<layer>.norm.weight`, `exits.<layer>.head.weight`), exit
 *   layers and the voting rule chosen on validation data.
 * - `peft/`: a Hugging Face PEFT adapter holding exactly ONE trained and evaluated path, the deepest
 *   exit: the LoRA on its path (`layers_to_transform`: its window, or every layer with an adapted prefix)
 *   and its norm/head as `modules_to_save`
 *   (`model.norm`, `lm_head`), so PEFT, which activates every tensor in the file, computes that path.
 * - vanilla LoRA and no tuning (`mode` `vanilla` / `none`): `edge_llm.json` alone, one path through the base
 *   model's final norm and lm_head (vanilla: with the PEFT adapter written beside it), so every method loads alike.
 * - with RAG: `rag_index.json` (retrieve/) and the manifest's `rag` field.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaModel, Linear } from '../model/llama.js';
import { AdapterError, applyPeftAdapter, loraTensors, savePeftAdapter, type LoraConfig, type RowSource } from '../model/lora.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { ExitHead } from './exits.js';
import { isTensor, matrixShape, resident, widenRowsBlock, type StoredMatrix } from '../backend/frozen.js';
import type { ExitPath, VotingRule } from '../infer/voting.js';
import type { RagManifest } from '../retrieve/index.js';

export const EDGE_FORMAT = 'edgetune.edge_llm/1';

/** Contents of `edge_llm.json`. */
export interface EdgeLlmManifest {
  format: typeof EDGE_FORMAT;
  /**
   * how the adapter was made (absent: `edge_llm`): `vanilla` = a PEFT adapter in the same folder, `none` = the
   * base model unchanged (RAG alone); both run one path, the base model's final norm and lm_head
   */
  mode?: 'edge_llm' | 'vanilla' | 'none';
  /** retrieval settings when prompts are augmented from `rag_index.json` (absent: no RAG) */
  rag?: RagManifest;
  /** exit layers, 0-based, ascending; the last is the last decoder layer */
  exit_layers: number[];
  /** first layer of each exit's window */
  window_starts: number[];
  /** how the layers before each window ran in training and run at inference (absent: `backbone`) */
  prefix?: 'backbone' | 'adapted';
  /** first layer that runs with LoRA on each exit's path (absent: window_starts; 0 with an adapted prefix) */
  path_starts?: number[];
  /** low-rank exit heads over the base lm_head (16-bit models keep it stored): rank and scale of every exit's LoRA */
  head_lora?: { r: number; scale: number };
  voting_rule: VotingRule;
  /** per-exit weights of the `weighted` vote, fitted on validation (absent in older adapters: uniform) */
  exit_weights?: number[];
  /** absent for `none` */
  lora?: { r: number; lora_alpha: number; lora_dropout: number; target_modules: string[] };
  base_model?: string;
  /** validation metrics per exit and per rule, when evaluated */
  validation?: unknown;
  [key: string]: unknown;
}

function layerOf(name: string): number {
  return Number(/\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);
}

/**
 * A low-rank exit head merged (lm_head + scale B A) as float32 rows, produced a block at a time so that it never
 * exists whole: the PEFT export's `modules_to_save` lm_head.
 */
function mergedHead(e: ExitHead): RowSource {
  const head = e.head,
    lora = e.lora;
  if (isTensor(head) || !lora) throw new Error('mergedHead: needs a low-rank head over a stored lm_head');
  const [V, d] = matrixShape(head);
  return {
    shape: [V, d],
    rows: (r0, n) => {
      const t = tf.tidy(() => {
        const base = tf.tensor2d(widenRowsBlock(head, r0, n), [n, d]);
        const b = tf.slice(lora.B, [r0, 0], [n, -1]);
        return tf.add(base, tf.mul(tf.matMul(b, lora.A), lora.scale));
      });
      const out = t.dataSync() as Float32Array;
      t.dispose();
      return out;
    },
  };
}

/**
 * Writes the voted model and the deepest path's PEFT adapter into `dir`.
 * @param linears linears carrying trained LoRA
 */
export function saveEdgeAdapter(
  dir: string,
  model: LlamaModel,
  exits: ExitHead[],
  linears: Linear[],
  lora: LoraConfig,
  manifest: { voting_rule: VotingRule; base_model?: string; validation?: unknown; prefix?: 'backbone' | 'adapted'; [key: string]: unknown },
): void {
  const starts = pathsOf(exits, manifest.prefix).map((p) => p.start);
  mkdirSync(dir, { recursive: true });
  const tensors = loraTensors(linears);
  let headLora: { r: number; scale: number } | undefined;
  for (const e of exits) {
    tensors.set(`exits.${e.layer}.norm.weight`, { shape: e.norm.shape, data: e.norm.dataSync() as Float32Array });
    if (isTensor(e.head)) tensors.set(`exits.${e.layer}.head.weight`, { shape: e.head.shape, data: e.head.dataSync() as Float32Array });
    else if (e.lora) {
      // A low-rank head over the stored lm_head: its factors (the base head is the model's own).
      tensors.set(`exits.${e.layer}.head.lora_A.weight`, { shape: e.lora.A.shape, data: e.lora.A.dataSync() as Float32Array });
      tensors.set(`exits.${e.layer}.head.lora_B.weight`, { shape: e.lora.B.shape, data: e.lora.B.dataSync() as Float32Array });
      headLora = { r: e.lora.A.shape[0], scale: e.lora.scale };
    } else throw new Error(`exit ${e.layer}: a head over the stored lm_head must have LoRA factors`);
  }
  writeSafetensors(join(dir, 'edge_llm.safetensors'), tensors, { format: 'edgetune' });
  // Compressed base weights (LUC): packed integers + scales per linear, so the edge box runs exactly the
  // model that was tuned without redoing calibration.
  const packed = new Map<string, TensorToWrite>();
  const meta: Record<string, string> = { format: 'edgetune-packed' };
  for (const lin of model.linears().values()) {
    if (!lin.packed) continue;
    const p = lin.packed;
    packed.set(`${lin.name}.qweight`, { shape: [p.data.length], data: p.data, dtype: p.bits === 8 ? 'I8' : 'U8' });
    packed.set(`${lin.name}.scales`, { shape: [p.scales.length], data: p.scales });
    meta[lin.name] = JSON.stringify({ bits: p.bits, rows: p.rows, cols: p.cols, group_size: p.groupSize, act_bits: lin.actBits ?? null });
  }
  for (const l of model.layers)
    for (const lin of Object.values(l.linears)) {
      if (lin.packed || !manifest.compression) continue;
      if (lin.stored) {
        const w = resident(lin.stored) as StoredMatrix;
        packed.set(`${lin.name}.weight`, { shape: [w.rows, w.cols], data: w.data, dtype: w.dtype });
      } else packed.set(`${lin.name}.weight`, { shape: lin.weight.shape, data: lin.weight.dataSync() as Float32Array });
    }
  if (packed.size) writeSafetensors(join(dir, 'compressed_model.safetensors'), packed, meta);
  const full: EdgeLlmManifest = {
    ...manifest,
    format: EDGE_FORMAT,
    exit_layers: exits.map((e) => e.layer),
    window_starts: exits.map((e) => e.start),
    prefix: manifest.prefix ?? 'backbone',
    path_starts: starts,
    ...(headLora ? { head_lora: headLora } : {}),
    lora: { r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout, target_modules: lora.targetModules },
  };
  writeFileSync(join(dir, 'edge_llm.json'), `${JSON.stringify(full, null, 2)}\n`);
  // Deepest path as PEFT: the LoRA on its path (its window, or every layer with an adapted prefix) and its
  // own norm/head replacing model.norm/lm_head.
  const last = exits[exits.length - 1],
    from = starts[starts.length - 1];
  const window = linears.filter((l) => layerOf(l.name) >= from && layerOf(l.name) <= last.layer);
  const layers: number[] = [];
  for (let i = from; i <= last.layer; i++) layers.push(i);
  savePeftAdapter(
    join(dir, 'peft'),
    { ...lora, layersToTransform: layers, modulesToSave: ['lm_head', 'model.norm'] },
    window,
    new Map<string, tf.Tensor | RowSource>([
      ['lm_head', isTensor(last.head) ? last.head : mergedHead(last)],
      ['model.norm', last.norm],
    ]),
    { base_model_name_or_path: manifest.base_model ?? null },
  );
}

/**
 * Writes `edge_llm.json` for a method without exits (vanilla LoRA, whose PEFT files are in `dir` already, or
 * no tuning): one path, the last layer through the base model's final norm and lm_head.
 */
export function savePlainManifest(
  dir: string,
  model: LlamaModel,
  lora: LoraConfig | null,
  manifest: { mode: 'vanilla' | 'none'; base_model?: string; validation?: unknown; [key: string]: unknown },
): void {
  mkdirSync(dir, { recursive: true });
  const full: EdgeLlmManifest = {
    voting_rule: 'mean',
    ...manifest,
    format: EDGE_FORMAT,
    exit_layers: [model.config.numHiddenLayers - 1],
    window_starts: [0],
    prefix: 'backbone',
    path_starts: [0],
    ...(lora ? { lora: { r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout, target_modules: lora.targetModules } } : {}),
  };
  writeFileSync(join(dir, 'edge_llm.json'), `${JSON.stringify(full, null, 2)}\n`);
}

/**
 * Loads a voted model written by {@link saveEdgeAdapter} (or a single path, {@link savePlainManifest}) onto
 * `model` (LoRA attached in place).
 * @returns the exit paths in ascending layer order and the manifest.
 * @throws AdapterError for a missing or inconsistent folder.
 */
export function loadEdgeAdapter(model: LlamaModel, dir: string): { paths: ExitPath[]; manifest: EdgeLlmManifest } {
  const mf = join(dir, 'edge_llm.json');
  if (!existsSync(mf)) throw new AdapterError(`no edge_llm.json in ${dir}`);
  const manifest = JSON.parse(readFileSync(mf, 'utf8')) as EdgeLlmManifest;
  if (manifest.format !== EDGE_FORMAT) throw new AdapterError(`${mf}: format ${manifest.format} is not ${EDGE_FORMAT}`);
  if (manifest.mode === 'vanilla' || manifest.mode === 'none') {
    if (manifest.mode === 'vanilla') applyPeftAdapter(model, dir);
    return { paths: [plainPath(model)], manifest };
  }
  if (!manifest.lora) throw new AdapterError(`${mf}: no lora field`);
  const { tensors } = readSafetensors(join(dir, 'edge_llm.safetensors'));
  const linears = model.linears();
  const cf = join(dir, 'compressed_model.safetensors');
  if (existsSync(cf)) {
    const { tensors: ct, metadata } = readSafetensors(cf);
    for (const lin of linears.values()) {
      const w = ct.get(`${lin.name}.weight`);
      if (w) {
        lin.weight.dispose();
        lin.weight = tf.tensor2d(w.data as Float32Array, w.shape as [number, number]);
        delete lin.stored;
        continue;
      }
      const q = ct.get(`${lin.name}.qweight`),
        sc = ct.get(`${lin.name}.scales`),
        info = metadata[lin.name];
      if (!q || !sc || !info) continue;
      const m = JSON.parse(info) as { bits: 2 | 3 | 4 | 8; rows: number; cols: number; group_size: number; act_bits?: number | null };
      lin.packed = {
        bits: m.bits,
        rows: m.rows,
        cols: m.cols,
        groupSize: m.group_size,
        scales: sc.data as Float32Array,
        data: q.data as Int8Array | Uint8Array,
      };
      if (m.act_bits) lin.actBits = m.act_bits;
      delete lin.stored;
      lin.weight.dispose();
      lin.weight = tf.zeros([0, 0]) as tf.Tensor2D;
    }
  }
  const scale = manifest.lora.lora_alpha / manifest.lora.r;
  const pairs = new Map<string, { A?: { data: Float32Array; shape: number[] }; B?: { data: Float32Array; shape: number[] } }>();
  for (const [name, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.(lora_A|lora_B)\.weight$/.exec(name);
    if (!m) continue;
    const e = pairs.get(m[1]) ?? {};
    e[m[2] === 'lora_A' ? 'A' : 'B'] = { data: t.data as Float32Array, shape: t.shape };
    pairs.set(m[1], e);
  }
  for (const [module, e] of pairs) {
    const lin = linears.get(module);
    if (!lin || !e.A || !e.B) throw new AdapterError(`${dir}: bad LoRA entry for ${module}`);
    lin.lora?.A.dispose();
    lin.lora?.B.dispose();
    lin.lora = {
      A: tf.variable(tf.tensor(e.A.data, e.A.shape), false),
      B: tf.variable(tf.tensor(e.B.data, e.B.shape), false),
      scale,
      dropout: 0,
    };
  }
  const paths: ExitPath[] = manifest.exit_layers.map((layer, k) => {
    const norm = tensors.get(`exits.${layer}.norm.weight`),
      head = tensors.get(`exits.${layer}.head.weight`);
    const A = tensors.get(`exits.${layer}.head.lora_A.weight`),
      B = tensors.get(`exits.${layer}.head.lora_B.weight`);
    if (!norm || !(head || (A && B && manifest.head_lora))) throw new AdapterError(`${dir}: exit ${layer} has no norm/head tensors`);
    const weight = manifest.exit_weights?.length === manifest.exit_layers.length ? manifest.exit_weights[k] : undefined;
    return {
      layer,
      start: (manifest.path_starts ?? manifest.window_starts)[k],
      norm: tf.tensor1d(norm.data as Float32Array),
      ...(head
        ? { head: tf.tensor2d(head.data as Float32Array, head.shape as [number, number]) }
        : {
            head: model.lmHead,
            headLora: {
              A: tf.tensor2d(A!.data as Float32Array, A!.shape as [number, number]),
              B: tf.tensor2d(B!.data as Float32Array, B!.shape as [number, number]),
              scale: manifest.head_lora!.scale,
            },
          }),
      ...(weight === undefined ? {} : { weight }),
    };
  });
  return { paths, manifest };
}

/**
 * Exit paths of a trainer's live exits (no copies). A path's `start` is its first layer with LoRA: the
 * window's start for a `backbone` prefix (trainer PrefixMode), 0 for an `adapted` one.
 */
export function pathsOf(exits: ExitHead[], prefix: 'backbone' | 'adapted' = 'backbone'): ExitPath[] {
  return exits.map((e) => ({
    layer: e.layer,
    start: prefix === 'adapted' ? 0 : e.start,
    norm: e.norm as unknown as tf.Tensor1D,
    head: e.head,
    ...(e.lora ? { headLora: { A: e.lora.A as tf.Tensor2D, B: e.lora.B as tf.Tensor2D, scale: e.lora.scale } } : {}),
  }));
}

/** The single path of a plain model (optionally LoRA on every layer): final norm + lm_head. */
export function plainPath(model: LlamaModel): ExitPath {
  return { layer: model.config.numHiddenLayers - 1, start: 0, norm: model.finalNorm, head: model.lmHead };
}

/** Writes a checkpoint-like JSON helper (pretty, newline-terminated). */
export function writeJson(file: string, value: unknown): void {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
