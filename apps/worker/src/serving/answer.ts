/**
 * Answers one inference request with a loaded adapter: a completion or chat prompt is generated with the
 * engine's exit voting (text deltas to `onText` when streaming), or, with `labels`, scored label by label
 * (the engine's `classify`, as `edgetune-engine infer --labels` does).
 */
import type { EngineTokenizer, LoadedAdapter, VotingRule } from '@edgetune/engine';
import type { InferenceMessage, InferenceRequest } from '@edgetune/core';

type Engine = typeof import('@edgetune/engine');
type Done = Extract<InferenceMessage, { type: 'done' }>;

/** A request the model cannot answer as asked: published as a 400 problem. */
export class InferenceRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly param: string | null,
  ) {
    super(message);
    this.name = 'InferenceRequestError';
  }
}

/** A base model with one fine-tuned adapter loaded, and the base model's tokenizer. */
export interface ServedModel extends LoadedAdapter {
  tok: EngineTokenizer;
}

/**
 * Prompt token ids of a request: the completion prompt as training encodes prompts (augmented by the adapter's
 * retrieval index when it has one), or the chat messages with the chat template (engine encodeChatPrompt).
 */
function promptIds(engine: Engine, m: ServedModel, req: InferenceRequest): number[] {
  if (req.messages) return engine.encodeChatPrompt(m.tok, req.messages);
  const text = req.prompt ?? '';
  const ids = engine.encodePrompt(m.tok, m.rag ? engine.augmentPrompt(m.tok, m.rag, text) : text);
  if (!ids.length) throw new InferenceRequestError('invalid_prompt', 'The prompt is empty and the tokenizer adds no bos token', 'prompt');
  return ids;
}

/**
 * Runs `req` on `m`.
 * @throws InferenceRequestError for labels that cannot be told apart by their first token, or an empty prompt.
 */
export function answer(engine: Engine, m: ServedModel, req: InferenceRequest, onText: (delta: string) => void): Done {
  const rule = (req.votingRule ?? m.rule ?? 'max') as VotingRule;
  const ids = promptIds(engine, m, req);
  if (req.labels) {
    const first = req.labels.map((l) => m.tok.encode(l, { addSpecialTokens: false })[0]);
    if (first.some((t) => t === undefined) || new Set(first).size !== first.length)
      throw new InferenceRequestError('invalid_labels', 'Every label must be non-empty and start with a different token', 'labels');
    const [res] = engine.classify(m.model, m.paths, [ids], first as number[], rule);
    const text = req.labels[res.label];
    onText(text);
    return {
      type: 'done',
      text,
      finish_reason: 'stop',
      prompt_tokens: ids.length,
      completion_tokens: 1,
      rule,
      label_probabilities: Object.fromEntries(req.labels.map((l, i) => [l, res.probs[i]])),
    };
  }
  const out = engine.complete(m.model, m.paths, m.tok, ids, {
    maxNewTokens: req.maxTokens,
    rule,
    temperature: req.temperature,
    ...(req.seed !== undefined ? { seed: req.seed } : {}),
    stop: req.stop,
    onText,
  });
  return {
    type: 'done',
    text: out.text,
    finish_reason: out.finishReason,
    prompt_tokens: ids.length,
    completion_tokens: out.completionTokens,
    rule,
  };
}
