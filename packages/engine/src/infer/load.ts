/** A base model with an adapter folder applied, ready for generation and label scoring with exit voting. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LlamaModel } from '../model/llama.js';
import { applyPeftAdapter } from '../model/lora.js';
import { loadEdgeAdapter, plainPath } from '../tune/artifacts.js';
import { loadRagAugmentation, type RagAugmentation } from '../retrieve/index.js';
import type { ExitPath, VotingRule } from './voting.js';

/** What {@link loadWithAdapter} returns. */
export interface LoadedAdapter {
  model: LlamaModel;
  /** the exit paths the vote runs over (one plain path without an Edge-LLM adapter) */
  paths: ExitPath[];
  /** the adapter's voting rule (edge_llm.json `voting_rule`), or null */
  rule: VotingRule | null;
  /** the adapter's retrieval index (rag_index.json), or null */
  rag: RagAugmentation | null;
}

/**
 * Loads the model folder `modelDir` and, optionally, an adapter folder: an edgetune tuning output or edge
 * bundle (`edge_llm.json`: any mode; its RAG index when it has one) or a PEFT folder.
 * @throws AdapterError when the adapter folder is malformed; the model loader's errors as they come.
 */
export function loadWithAdapter(modelDir: string, adapter?: string): LoadedAdapter {
  const model = LlamaModel.load(modelDir);
  if (!adapter) return { model, paths: [plainPath(model)], rule: null, rag: null };
  if (existsSync(join(adapter, 'edge_llm.json'))) {
    const { paths, manifest } = loadEdgeAdapter(model, adapter);
    return { model, paths, rule: manifest.voting_rule, rag: loadRagAugmentation(adapter, manifest) };
  }
  applyPeftAdapter(model, adapter);
  return { model, paths: [plainPath(model)], rule: null, rag: null };
}
