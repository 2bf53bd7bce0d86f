/** Records -> token ids with loss masks, and padded batches. */
import type { ChatMessage, EngineTokenizer } from '../tokenizer/index.js';
import { renderPlainChat } from '../tokenizer/chat.js';
import { IGNORE_INDEX, isChatRecord, type TrainingRecord } from '@edgetune/core';

// The answer of a record and a dataset's classes are data facts the API needs too: they live in core.
export { classificationLabels, recordAnswer } from '@edgetune/core';

/**
 * One tokenized training example.
 *
 * `labels` has the length of `inputIds` and is NOT shifted: `labels[t]` is `inputIds[t]` on completion tokens
 * (eos included) and {@link IGNORE_INDEX} on prompt tokens. The loss follows the HF convention: the logits at
 * position t-1 are scored against `labels[t]` (the model code does the shift).
 */
export interface EncodedExample {
  inputIds: number[];
  labels: number[];
  /** Number of leading prompt tokens (all labelled IGNORE_INDEX); the completion starts here. */
  promptLength: number;
  /** What `maxLength` cut: nothing, the start of the prompt, or (prompt dropped) the end of the completion. */
  truncated: 'none' | 'prompt' | 'completion';
}

/**
 * Prompt token ids the way training sees them: bos (when the tokenizer adds one) + `encode(prompt)` without
 * special tokens. Inference must build prompts the same way so train and test token boundaries agree.
 */
export function encodePrompt(tok: EngineTokenizer, prompt: string): number[] {
  const ids = tok.encode(prompt, { addSpecialTokens: false });
  return tok.addBos && tok.bosId !== null ? [tok.bosId, ...ids] : ids;
}

/**
 * Chat prompt token ids the way training sees a chat record's context ({@link encodeRecord}): the tokenizer's
 * chat template with the generation prompt, encoded without special tokens (the template writes bos); without
 * a template, bos (when the tokenizer adds one) + {@link renderPlainChat} with the generation prompt.
 * @throws TokenizerError `invalid_chat_template` when the template fails to render.
 */
export function encodeChatPrompt(tok: EngineTokenizer, messages: readonly ChatMessage[]): number[] {
  if (tok.chatTemplate !== null)
    return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  return encodePrompt(tok, renderPlainChat(messages, { addGenerationPrompt: true, eosToken: tok.eosToken }));
}

/**
 * Tokenizes a record into prompt + completion with the loss on the completion (+ eos) only.
 *
 * - prompt/completion: `[bos?] + encode(prompt) + encode(completion) + [eos]` (see {@link encodePrompt}).
 * - chat with a chat template: prompt = template(all messages but the last, add_generation_prompt);
 *   completion = what the template adds for the last assistant turn (its end-of-turn marker included,
 *   trailing whitespace dropped), + eos unless that already ends with eos. Without a template:
 *   {@link renderPlainChat} for the prompt, the assistant content + eos for the completion.
 *
 * Truncation to `maxLength` tokens: the prompt loses tokens from its start (a leading bos is kept) so the
 * completion survives whole; if the completion alone (with bos) does not fit, the prompt is dropped and the
 * completion is cut from its end (its eos is lost).
 * No eos is appended when the tokenizer has none.
 * @throws RangeError when `maxLength` is not an integer >= 2.
 */
export function encodeRecord(tok: EngineTokenizer, rec: TrainingRecord, opts: { maxLength: number }): EncodedExample {
  const { maxLength } = opts;
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`);
  const eos = tok.eosId;
  const withEos = (ids: number[]): number[] => (eos !== null && ids[ids.length - 1] !== eos ? [...ids, eos] : ids);

  let head: number[]; // kept through truncation (bos)
  let body: number[]; // the prompt proper, truncatable from the left
  let completion: number[];
  if (isChatRecord(rec)) {
    const context = rec.messages.slice(0, -1);
    const last = rec.messages[rec.messages.length - 1]!;
    if (tok.chatTemplate !== null) {
      const promptText = tok.applyChatTemplate(context, { addGenerationPrompt: true });
      const fullText = tok.applyChatTemplate(rec.messages, { addGenerationPrompt: false });
      const answerText = fullText.startsWith(promptText) ? fullText.slice(promptText.length).trimEnd() : last.content;
      body = tok.encode(promptText, { addSpecialTokens: false });
      head = tok.bosId !== null && body[0] === tok.bosId ? body.splice(0, 1) : [];
      completion = withEos(tok.encode(answerText, { addSpecialTokens: false }));
    } else {
      const promptText = renderPlainChat(context, { addGenerationPrompt: true, eosToken: tok.eosToken });
      head = tok.addBos && tok.bosId !== null ? [tok.bosId] : [];
      body = tok.encode(promptText, { addSpecialTokens: false });
      completion = withEos(tok.encode(last.content, { addSpecialTokens: false }));
    }
  } else {
    head = tok.addBos && tok.bosId !== null ? [tok.bosId] : [];
    body = tok.encode(rec.prompt, { addSpecialTokens: false });
    const answer = tok.encode(rec.completion, { addSpecialTokens: false });
    completion = eos !== null ? [...answer, eos] : answer;
  }

  let truncated: EncodedExample['truncated'] = 'none';
  if (head.length + body.length + completion.length > maxLength) {
    if (head.length + completion.length <= maxLength) {
      body = body.slice(body.length - (maxLength - head.length - completion.length));
      truncated = 'prompt';
    } else {
      body = [];
      completion = completion.slice(0, maxLength - head.length);
      truncated = 'completion';
    }
  }
  const promptLength = head.length + body.length;
  const inputIds = [...head, ...body, ...completion];
  const labels = new Array<number>(inputIds.length).fill(IGNORE_INDEX);
  for (let i = promptLength; i < inputIds.length; i++) labels[i] = inputIds[i]!;
  return { inputIds, labels, promptLength, truncated };
}

/** A right-padded batch, row-major `[batch, seq]`. */
export interface Batch {
  /** Token ids, `padId` on padding. */
  inputIds: Int32Array;
  /** Targets, {@link IGNORE_INDEX} on prompt and padding (unshifted, see {@link EncodedExample}). */
  labels: Int32Array;
  /** 1 on real tokens, 0 on padding. */
  attentionMask: Uint8Array;
  batch: number;
  seq: number;
}

/**
 * Pads examples on the right to the longest one (rounded up to `padToMultipleOf` tokens when given).
 * @throws RangeError for an empty batch or examples whose labels and ids differ in length.
 */
export function collate(batch: readonly EncodedExample[], padId: number, opts: { padToMultipleOf?: number } = {}): Batch {
  if (batch.length === 0) throw new RangeError('collate: empty batch');
  let seq = 0;
  for (const ex of batch) {
    if (ex.labels.length !== ex.inputIds.length) throw new RangeError('collate: labels and inputIds differ in length');
    seq = Math.max(seq, ex.inputIds.length);
  }
  const mult = opts.padToMultipleOf ?? 1;
  if (mult > 1) seq = Math.ceil(seq / mult) * mult;
  const n = batch.length;
  const inputIds = new Int32Array(n * seq).fill(padId);
  const labels = new Int32Array(n * seq).fill(IGNORE_INDEX);
  const attentionMask = new Uint8Array(n * seq);
  batch.forEach((ex, b) => {
    inputIds.set(ex.inputIds, b * seq);
    labels.set(ex.labels, b * seq);
    attentionMask.fill(1, b * seq, b * seq + ex.inputIds.length);
  });
  return { inputIds, labels, attentionMask, batch: n, seq };
}
