/**
 * Archives the worker stores as blobs: checkpoint folders (tar), the PEFT adapter (tar of
 * `adapter_config.json` + `adapter_model.safetensors`; none for method `rag`, which trains nothing) and the
 * edge bundle, every file of the engine's output as it laid them out, so `edgetune infer --bundle` loads it:
 * `edge_llm.json`, `metrics.json` and `manifest.json` with sha256 sums, plus per method the Edge-LLM voted model
 * (`edge_llm.safetensors`, PEFT files under `peft/`), LoRA's PEFT files at the top, RAG's `rag_index.json`; for
 * a compressed job also `compressed_model.safetensors`, the packed pruned and quantized base weights, and
 * `policy.json`, the LUC policy as GET /v1/policies/{id} shows it.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';

/** Bundle manifest format tag. */
export const BUNDLE_FORMAT = 'edgetune.bundle/1';

/** Writes a tar of `files` (paths relative to `cwd`) to `out`; ownership-free, fixed mtime. */
export async function packTar(cwd: string, files: string[], out: string, mtime = new Date()): Promise<void> {
  await tar.create({ cwd, file: out, portable: true, mtime, noDirRecurse: false }, files);
}

/** Extracts a tar file into `dir` (created). */
export async function unpackTar(file: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await tar.extract({ file, cwd: dir, strict: true });
}

/** Files of a folder (recursive), relative, sorted. */
export function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, rel));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Files of the engine's output that go into the bundle when present (engine runTuning: which depends on the method). */
const BUNDLE_FILES = [
  'edge_llm.json',
  'edge_llm.safetensors',
  'metrics.json',
  'adapter_config.json',
  'adapter_model.safetensors',
  'peft/adapter_config.json',
  'peft/adapter_model.safetensors',
  'compressed_model.safetensors',
  'rag_index.json',
];

/** The folder of the engine's output that holds the PEFT adapter (`peft/` for Edge-LLM, the top for LoRA), or null (rag). */
export function peftDirOf(outDir: string): string | null {
  for (const d of [join(outDir, 'peft'), outDir]) if (existsSync(join(d, 'adapter_config.json'))) return d;
  return null;
}

/** The bundle manifest. */
export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  job_id: string;
  base_model: string;
  created_at: number;
  exit_layers: number[];
  voting_rule: string;
  /** the compression budget and policy of a compressed job (null: dense base model) */
  compression: { policy_id: string | null; budget: unknown } | null;
  files: Record<string, { bytes: number; sha256: string }>;
}

/**
 * Rewrites the engine's output folder for distribution: `base_model` / `base_model_name_or_path` name
 * the base model id (not the worker's local path), and a compressed model's `compression` names its
 * stored policy. Returns the voted model's exit layers and rule.
 */
export function normalizeArtifacts(
  outDir: string,
  modelId: string,
  policyId: string | null = null,
): { exitLayers: number[]; votingRule: string } {
  const edgeFile = join(outDir, 'edge_llm.json');
  const edge = JSON.parse(readFileSync(edgeFile, 'utf8')) as {
    exit_layers: number[];
    voting_rule: string;
    base_model?: string;
    compression?: Record<string, unknown> | null;
  };
  edge.base_model = modelId;
  if (edge.compression) edge.compression = { policy_id: policyId, ...edge.compression };
  writeFileSync(edgeFile, `${JSON.stringify(edge, null, 2)}\n`);
  const peftDir = peftDirOf(outDir);
  if (peftDir) {
    const cfgFile = join(peftDir, 'adapter_config.json');
    const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    cfg.base_model_name_or_path = modelId;
    writeFileSync(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`);
  }
  return { exitLayers: edge.exit_layers, votingRule: edge.voting_rule };
}

/**
 * Packs `<outDir>` (after {@link normalizeArtifacts}) into `peft.tar` (when the run left a PEFT adapter) and
 * `bundle.tar` under `destDir`.
 * @returns the tar paths by format.
 */
export async function packAdapters(
  outDir: string,
  destDir: string,
  meta: { jobId: string; modelId: string; exitLayers: number[]; votingRule: string; policy?: { id: string } | null; compression?: unknown },
): Promise<{ peft?: string; bundle: string }> {
  const mtime = new Date();
  const peftDir = peftDirOf(outDir);
  const peft = peftDir ? join(destDir, 'peft.tar') : undefined;
  if (peftDir && peft) await packTar(peftDir, ['adapter_config.json', 'adapter_model.safetensors'], peft, mtime);
  const files = BUNDLE_FILES.filter((f) => existsSync(join(outDir, f)));
  if (meta.policy) {
    writeFileSync(join(outDir, 'policy.json'), `${JSON.stringify(meta.policy, null, 2)}\n`);
    files.push('policy.json');
  }
  files.sort();
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    job_id: meta.jobId,
    base_model: meta.modelId,
    created_at: Math.floor(mtime.getTime() / 1000),
    exit_layers: meta.exitLayers,
    voting_rule: meta.votingRule,
    compression: meta.compression ? { policy_id: meta.policy?.id ?? null, budget: meta.compression } : null,
    files: Object.fromEntries(files.map((f) => [f, { bytes: statSync(join(outDir, f)).size, sha256: sha256File(join(outDir, f)) }])),
  };
  writeFileSync(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const bundle = join(destDir, 'bundle.tar');
  await packTar(outDir, ['manifest.json', ...files], bundle, mtime);
  return { ...(peft ? { peft } : {}), bundle };
}
