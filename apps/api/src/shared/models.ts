/**
 * Base models: every subfolder of the models folder with a Hugging Face `config.json` (LLaMA family).
 * Reads only the JSON (no TF.js), so the API can list and check models without loading weights; the
 * weight files are only hashed, for the model's content fingerprint (fingerprint.ts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PrismaClient } from './db.js';
import { modelFingerprint } from './fingerprint.js';

/** The linear modules LoRA can target on a LLaMA-family decoder layer. */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** What a model folder's config.json says, in the units the API reports. */
export interface ModelSummary {
  id: string;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  paramCount: number;
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

/** Default exit layers: every L/4 layers, the last on the last layer (same rule as the engine). */
export function defaultExitLayers(numLayers: number, count = 4): number[] {
  const n = Math.min(count, numLayers);
  const out = new Set<number>();
  for (let k = 1; k <= n; k++) out.add(Math.round((numLayers * k) / n) - 1);
  return [...out].sort((a, b) => a - b);
}

/** Limits derived from a summary. */
export function limitsOf(m: Pick<ModelSummary, 'numLayers' | 'hiddenSize' | 'maxPositionEmbeddings'>): ModelLimits {
  return {
    n_layers: m.numLayers,
    max_lora_rank: Math.min(256, m.hiddenSize),
    max_length: Math.min(m.maxPositionEmbeddings, 4096),
    target_modules: [...LORA_TARGETS],
    default_exit_layers: defaultExitLayers(m.numLayers),
  };
}

function num(c: Record<string, unknown>, key: string, dflt?: number): number {
  const v = c[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (dflt !== undefined) return dflt;
  throw new Error(`config.json: "${key}" is missing or not a number`);
}

/** Summary of one model folder. @throws Error when config.json is missing or unusable. */
export function readModelSummary(dir: string, id: string): ModelSummary {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const L = num(config, 'num_hidden_layers'), H = num(config, 'hidden_size'), V = num(config, 'vocab_size');
  const I = num(config, 'intermediate_size', 4 * H);
  const heads = num(config, 'num_attention_heads');
  const kv = num(config, 'num_key_value_heads', heads);
  const headDim = num(config, 'head_dim', H / heads);
  const tied = config.tie_word_embeddings === true;
  const attn = H * heads * headDim * 2 + H * kv * headDim * 2;
  const perLayer = attn + 3 * H * I + 2 * H;
  const paramCount = V * H * (tied ? 1 : 2) + L * perLayer + H;
  return { id, numLayers: L, hiddenSize: H, vocabSize: V, maxPositionEmbeddings: num(config, 'max_position_embeddings', 2048), paramCount, config };
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
      summary = readModelSummary(join(modelsDir, e.name), e.name);
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

/**
 * Records this host's models in the `base_models` table (upsert; adds `host` to the model's hosts). A
 * model's `fingerprint` becomes this host's when it has one (a host without weights keeps the recorded
 * one); `log` hears when it differs from the one another host recorded.
 */
export async function registerModels(db: PrismaClient, models: ScannedModel[], host: string, log: (msg: string) => void = () => {}): Promise<void> {
  for (const m of models) {
    const data = {
      config: m.config as object,
      numLayers: m.numLayers,
      hiddenSize: m.hiddenSize,
      vocabSize: m.vocabSize,
      maxPositionEmbeddings: m.maxPositionEmbeddings,
      paramCount: BigInt(Math.round(m.paramCount)),
      ...(m.fingerprint ? { fingerprint: m.fingerprint } : {}),
    };
    const existing = await db.baseModel.findUnique({ where: { id: m.id }, select: { hosts: true, fingerprint: true } });
    if (m.fingerprint && existing?.fingerprint && existing.fingerprint !== m.fingerprint) {
      log(`model ${m.id}: this host's weights (fingerprint ${m.fingerprint.slice(0, 12)}) differ from those last recorded (${existing.fingerprint.slice(0, 12)}); `
        + 'compression policies are kept per fingerprint');
    }
    const hosts = [...(existing?.hosts ?? []).filter((h) => h !== host), host].slice(-32);
    await db.baseModel.upsert({ where: { id: m.id }, create: { id: m.id, ...data, hosts }, update: { ...data, hosts } });
  }
}
