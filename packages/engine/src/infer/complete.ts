/**
 * Text completion on top of {@link generate}: decoded text with stop sequences, and the text streamed as it
 * is generated. Deltas never take back what they gave: text that may still become a stop sequence, or an
 * incomplete UTF-8 character (decoded as U+FFFD), is held back until the next token settles it.
 */
import type { LlamaModel } from '../model/llama.js';
import type { EngineTokenizer } from '../tokenizer/index.js';
import { generate } from './generate.js';
import type { ExitPath, VotingRule } from './voting.js';

/** Options of {@link complete}. */
export interface CompleteOptions {
  /** new tokens at most */
  maxNewTokens: number;
  rule: VotingRule;
  /** 0 = greedy */
  temperature?: number;
  seed?: number;
  /** stop sequences: the text ends before the first one generated (not included) */
  stop?: readonly string[];
  /** receives the text as it is generated, in order; the deltas concatenate to the returned text */
  onText?: (delta: string) => void;
}

/** What {@link complete} returns. */
export interface Completion {
  text: string;
  /** tokens generated (stop token excluded; those of a stop sequence included) */
  completionTokens: number;
  /** `stop`: eos or a stop sequence; `length`: maxNewTokens reached */
  finishReason: 'stop' | 'length';
}

/**
 * Generates a continuation of `prompt` (token ids) with exit voting, decoded without special tokens (as
 * `edgetune-engine infer` does), ended at eos, at a stop sequence or after `maxNewTokens` tokens.
 * @throws Error when `prompt` is empty (generate).
 */
export function complete(model: LlamaModel, paths: ExitPath[], tok: EngineTokenizer, prompt: number[], o: CompleteOptions): Completion {
  const stops = (o.stop ?? []).filter((s) => s.length > 0);
  const holdBack = Math.max(0, ...stops.map((s) => s.length - 1));
  const ids: number[] = [];
  let sent = 0;
  let cut: number | null = null;
  const emit = (text: string, upTo: number) => {
    if (upTo > sent) o.onText?.(text.slice(sent, upTo));
    sent = Math.max(sent, upTo);
  };
  generate(model, paths, prompt, {
    maxNewTokens: o.maxNewTokens,
    rule: o.rule,
    temperature: o.temperature ?? 0,
    seed: o.seed,
    stopIds: tok.eosId !== null ? [tok.eosId] : [],
    onToken: (id) => {
      ids.push(id);
      const text = tok.decode(ids, { skipSpecialTokens: true });
      // a stop sequence can only end in the new text or in what is held back
      const at = stops.map((s) => text.indexOf(s, Math.max(0, sent - s.length + 1))).filter((i) => i >= 0);
      if (at.length) {
        cut = Math.min(...at);
        emit(text, cut);
        return false;
      }
      let safe = text.length - holdBack;
      while (safe > sent && text.charCodeAt(safe - 1) === 0xfffd) safe--;
      emit(text, safe);
      return true;
    },
  });
  const full = tok.decode(ids, { skipSpecialTokens: true });
  const text = cut === null ? full : full.slice(0, cut);
  emit(text, text.length);
  const finishReason = cut !== null || ids.length < o.maxNewTokens ? 'stop' : 'length';
  return { text, completionTokens: ids.length, finishReason };
}
