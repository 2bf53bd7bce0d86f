/**
 * The contract between the API's OpenAI-compatible completion routes and the workers that serve tuned
 * models: one BullMQ queue per base model (consumed by the workers that have it), one Redis pub/sub channel
 * per request on which the worker publishes the answer as it is generated.
 */

/**
 * Queue of inference requests for base model `modelId`, under the job queue's prefix. BullMQ forbids `:` in
 * queue names, so the id is URI-encoded (`inference-tiny-llama`).
 */
export function inferenceQueueName(modelId: string): string {
  return `inference-${encodeURIComponent(modelId)}`;
}

/** Pub/sub channel on which the answer to request `requestId` is published ({@link InferenceMessage}, JSON). */
export function inferenceChannel(prefix: string, requestId: string): string {
  return `${prefix}:inference:${requestId}`;
}

/**
 * The job id inside a fine-tuned model name `ft:<base model>:<suffix>:<job id>` (as the worker names it when a
 * job succeeds), or null when `name` is not one.
 */
export function jobIdOfFineTunedModel(name: string): string | null {
  if (!name.startsWith('ft:')) return null;
  const id = name.slice(name.lastIndexOf(':') + 1);
  return /^ftjob_[0-9A-Za-z]+$/.test(id) ? id : null;
}

/** One chat turn as the API accepts it (OpenAI roles; `developer` is read as `system`). */
export interface InferenceChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Payload of an inference queue job. */
export interface InferenceRequest {
  /** request id: names the reply channel */
  id: string;
  /** the fine-tuned model's job: its `bundle` adapter is loaded on the base model */
  jobId: string;
  /** base model id (a folder of the worker's models directory) */
  model: string;
  /** blob of the job's edge bundle (a tar) */
  adapterBlobId: string;
  /** a completion prompt, or chat messages (rendered with the tokenizer's chat template) */
  prompt?: string;
  messages?: InferenceChatMessage[];
  /** new tokens at most */
  maxTokens: number;
  /** 0 = greedy */
  temperature: number;
  seed?: number;
  /** stop sequences: the text ends before the first one generated */
  stop: string[];
  /** label scoring: answer the label whose first token the voted exits find most likely */
  labels?: string[];
  /** voting rule over the exits; default: the bundle's */
  votingRule?: string;
  /** whether to publish text deltas as they are generated */
  stream: boolean;
}

/** What the worker publishes on {@link inferenceChannel}: text deltas (stream only), then `done` or `error`. */
export type InferenceMessage =
  | { type: 'delta'; text: string }
  | {
      type: 'done';
      text: string;
      finish_reason: 'stop' | 'length';
      prompt_tokens: number;
      completion_tokens: number;
      /** voting rule used */
      rule: string;
      /** label scoring only: the voted probability of each label, renormalised over the labels */
      label_probabilities?: Record<string, number>;
    }
  | { type: 'error'; status: number; code: string; message: string; param: string | null };
