/**
 * Base models: every subfolder of the models folder with a Hugging Face `config.json` (LLaMA family).
 * Reads only the JSON and the safetensors headers (no TF.js), so the API can list and check models without
 * loading weights; the weight files are otherwise only hashed, for the model's content fingerprint
 * (fingerprint.ts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLlamaConfig, ModelConfigError, type ModelType } from '../hf-config.js';
import { readWeightIndex, storedDtype, type SafetensorsDtype } from '../safetensors-index.js';
import { defaultExitLayers } from '../exits.js';
import { LINEAR_NAMES } from '../names.js';
import { modelFingerprint } from './fingerprint.js';

/** What a model folder's config.json and safetensors headers say, in the units the API reports. */
export interface ModelSummary {
  id: string;
  /** HF `model_type` (llama, mistral, qwen2; a config without one is llama) */
  family: ModelType;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** parameters: the elements of every stored tensor when the weights are there, else counted from the config */
  paramCount: number;
  /** the dtype most of the stored weights have (e.g. BF16); null: no readable safetensors weights */
  storedDtype: SafetensorsDtype | null;
  /** bytes of the stored tensors (headers excluded); null: no readable safetensors weights */
  weightBytes: number | null;
  config: Record<string, unknown>;
}

/** Training limits of a base model, as `GET /v1/models` reports them. */
export interface ModelLimits {
  n_layers: number;
  max_lora_rank: number;
  max_length: number;
  target_modules: string[];
  default_exit_layers: number[];
}

/** Limits derived from a summary. */
export function limitsOf(m: Pick<ModelSummary, 'numLayers' | 'hiddenSize' | 'maxPositionEmbeddings'>): ModelLimits {
  return {
    n_layers: m.numLayers,
    max_lora_rank: Math.min(256, m.hiddenSize),
    max_length: Math.min(m.maxPositionEmbeddings, 4096),
    target_modules: [...LINEAR_NAMES],
    default_exit_layers: defaultExitLayers(m.numLayers),
  };
}

/**
 * Summary of one model folder, from its `config.json` through the one HF config parser (hf-config.ts),
 * so the API lists exactly the models the engine loads, and from the headers of its safetensors weights
 * (safetensors-index.ts readWeightIndex: parameters, stored dtype and bytes). Weights that are absent or
 * unreadable leave the dtype and bytes null and the parameters counted from the config; `log` hears why
 * when they are there but unreadable.
 * @throws ModelConfigError when config.json is missing, not JSON, or describes a model the engine refuses.
 */
export function readModelSummary(dir: string, id: string, log: (msg: string) => void = () => {}): ModelSummary {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ModelConfigError(`${join(dir, 'config.json')}: ${(e as Error).message}`);
  }
  const c = parseLlamaConfig(config);
  const H = c.hiddenSize,
    q = c.numAttentionHeads * c.headDim,
    kv = c.numKeyValueHeads * c.headDim;
  const perLayer = 2 * H * q + 2 * H * kv + 3 * H * c.intermediateSize + 2 * H;
  let paramCount = c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + c.numHiddenLayers * perLayer + H;
  let dtype: SafetensorsDtype | null = null,
    weightBytes: number | null = null;
  if (existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json'))) {
    try {
      const index = readWeightIndex(dir);
      if (index.params > 0) {
        paramCount = index.params;
        dtype = storedDtype(index);
        weightBytes = index.bytes;
      }
    } catch (e) {
      log(`model ${id}: weights not described (${(e as Error).message}); parameters counted from config.json`);
    }
  }
  return {
    id,
    family: c.modelType ?? 'llama',
    numLayers: c.numHiddenLayers,
    hiddenSize: H,
    vocabSize: c.vocabSize,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    paramCount,
    storedDtype: dtype,
    weightBytes,
    config,
  };
}

/** A scanned model folder: its summary and content fingerprint (null: the folder has no complete weights). */
export interface ScannedModel extends ModelSummary {
  fingerprint: string | null;
}

/**
 * Every usable model folder under `modelsDir` (missing folder: none), with its content fingerprint
 * (file hashes are cached, so a rescan of unchanged folders only stats them). Unusable folders are skipped.
 */
export async function scanModels(modelsDir: string, log: (msg: string) => void = () => {}): Promise<ScannedModel[]> {
  if (!existsSync(modelsDir)) return [];
  const out: ScannedModel[] = [];
  for (const e of readdirSync(modelsDir, { withFileTypes: true })) {
    if (!e.isDirectory() || !existsSync(join(modelsDir, e.name, 'config.json'))) continue;
    let summary: ModelSummary;
    try {
      summary = readModelSummary(join(modelsDir, e.name), e.name, log);
    } catch (err) {
      log(`skipping model ${e.name}: ${(err as Error).message}`);
      continue;
    }
    let fingerprint: string | null = null;
    try {
      fingerprint = await modelFingerprint(join(modelsDir, e.name));
    } catch (err) {
      log(`model ${e.name}: no fingerprint (${(err as Error).message})`);
    }
    out.push({ ...summary, fingerprint });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * The content fingerprint of base model `id` as this host sees it: its own folder's under `modelsDir`
 * when it has the model's weights, else `reported` (what the hosts that have them recorded in `base_models`).
 */
export async function hostFingerprint(modelsDir: string, id: string, reported: string | null): Promise<string | null> {
  const dir = join(modelsDir, id);
  if (id === '.' || id === '..' || /[\\/]/.test(id) || !existsSync(join(dir, 'config.json'))) return reported;
  try {
    return (await modelFingerprint(dir)) ?? reported;
  } catch {
    return reported;
  }
}
