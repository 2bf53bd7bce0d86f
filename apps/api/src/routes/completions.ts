/**
 * `/v1/completions` and `/v1/chat/completions`: OpenAI-compatible text generation with a tuned model, answered
 * by a worker that has its base model (services/inference.ts), as one JSON object or, with `stream: true`,
 * as Server-Sent Events in OpenAI's chunk format ending with `data: [DONE]`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { randomString, type InferenceChatMessage, type InferenceMessage, type InferenceRequest } from '@edgetune/core';
import { ApiError } from '../errors.js';
import { addOpenAiError, openAiError } from '../openai-errors.js';
import { authOf } from '../plugins/auth.js';
import { InferenceRelay, resolveServedModel } from '../services/inference.js';
import {
  ChatCompletion,
  ChatCompletionCreate,
  Completion,
  CompletionCreate,
  problems,
  ref,
  type ChatCompletionCreateBody,
  type CompletionCreateBody,
} from '../schemas.js';

/** How long a request waits for its answer (queued behind others included), ms: then 504 `inference_timeout`. */
export const INFERENCE_TIMEOUT_MS = 300_000;
/** `max_tokens` when the request gives none: OpenAI's for completions; for chat, ours (OpenAI: the context). */
const DEFAULT_MAX_TOKENS = { completion: 16, chat: 256 };
/** OpenAI's default temperature. */
const DEFAULT_TEMPERATURE = 1;

type Kind = 'completion' | 'chat';
type Done = Extract<InferenceMessage, { type: 'done' }>;
type Body = (CompletionCreateBody | ChatCompletionCreateBody) & { prompt?: unknown; messages?: unknown; max_completion_tokens?: number };

const DESCRIPTION =
  "Generates with a tuned model (a succeeded job's `fine_tuned_model`) on a worker that has its base model, voting over the " +
  "adapter's exits at every token as `edgetune-engine infer` does. `stream: true` answers with Server-Sent Events (`data: {chunk}` " +
  'lines, then `data: [DONE]`). Extension fields: `labels` (label scoring: the answer is the most likely label) and `voting_rule`. ' +
  'Errors: 404 `model_not_found` (no such fine-tuned model in this project, or its job did not succeed), 400 for bad parameters, ' +
  '503 `model_not_loaded` with `Retry-After` when no worker has the base model running, 504 `inference_timeout`.';

/** The request's chat messages in the roles the tokenizer's chat template knows (`developer` -> `system`; text parts joined). */
function chatMessages(body: ChatCompletionCreateBody): InferenceChatMessage[] {
  return body.messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
  }));
}

/** The queue payload of a request. */
function inferenceRequest(kind: Kind, body: Body, served: Awaited<ReturnType<typeof resolveServedModel>>): InferenceRequest {
  const stop = body.stop === undefined ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomString(24)}`,
    jobId: served.jobId,
    model: served.model,
    adapterBlobId: served.adapterBlobId,
    ...(kind === 'chat'
      ? { messages: chatMessages(body as ChatCompletionCreateBody) }
      : { prompt: typeof body.prompt === 'string' ? body.prompt : (body.prompt as string[])[0] }),
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS[kind],
    temperature: body.temperature ?? DEFAULT_TEMPERATURE,
    ...(body.seed !== undefined ? { seed: body.seed } : {}),
    stop,
    ...(body.labels ? { labels: body.labels } : {}),
    ...(body.voting_rule ? { votingRule: body.voting_rule } : {}),
    stream: body.stream === true,
  };
}

const usageOf = (d: Done) => ({
  prompt_tokens: d.prompt_tokens,
  completion_tokens: d.completion_tokens,
  total_tokens: d.prompt_tokens + d.completion_tokens,
});
const labelsOf = (d: Done) => (d.label_probabilities ? { label_probabilities: d.label_probabilities } : {});

/** The non-streaming answer object. */
function answerObject(kind: Kind, id: string, created: number, model: string, d: Done) {
  const common = { id, created, model, usage: usageOf(d) };
  if (kind === 'completion')
    return {
      ...common,
      object: 'text_completion' as const,
      choices: [{ index: 0, text: d.text, logprobs: null, finish_reason: d.finish_reason, ...labelsOf(d) }],
    };
  return {
    ...common,
    object: 'chat.completion' as const,
    choices: [
      {
        index: 0,
        message: { role: 'assistant' as const, content: d.text, refusal: null },
        logprobs: null,
        finish_reason: d.finish_reason,
        ...labelsOf(d),
      },
    ],
  };
}

/** OpenAI's error object, for an error met once a stream has started. */
function streamError(e: ApiError) {
  return { error: openAiError(e.status, e.code, e.message, e.param) };
}

const completions: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  const relay = new InferenceRelay(app.redis, app.config.queuePrefix);
  app.addHook('onClose', async () => relay.close());
  app.addHook('preSerialization', addOpenAiError);

  /**
   * Sends `req` to a worker, handing deltas to `onDelta`. `queued` settles once the request is queued (or
   * rejects: 503), `answer` with the answer (rejects with the worker's error, 503 or 504); `cancel` (the
   * client left) stops waiting and takes the request off the queue if no worker has taken it yet.
   */
  function run(
    req: InferenceRequest,
    onDelta: (text: string) => void,
  ): { queued: Promise<void>; answer: Promise<Done>; cancel: () => void } {
    let stop = () => {};
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const settle = () => {
      finished = true;
      clearTimeout(timer);
      stop();
    };
    let fail: (e: ApiError) => void = () => {};
    let queued!: Promise<void>;
    const answer = new Promise<Done>((resolve, reject) => {
      fail = reject;
      timer = setTimeout(() => {
        settle();
        reject(new ApiError(504, 'inference_timeout', `No answer within ${INFERENCE_TIMEOUT_MS / 1000} s`));
      }, INFERENCE_TIMEOUT_MS);
      queued = relay
        .send(req, (m) => {
          if (m.type === 'delta') return onDelta(m.text);
          settle();
          if (m.type === 'done') resolve(m);
          else reject(new ApiError(m.status, m.code, m.message, { param: m.param }));
        })
        .then(
          (s) => {
            if (finished) s();
            else stop = s;
          },
          (e) => {
            settle();
            reject(e);
            throw e;
          },
        );
    });
    queued.catch(() => {}); // the caller awaits `queued` or `answer`: both reject alike
    const cancel = () => {
      if (finished) return;
      settle();
      relay.withdraw(req);
      fail(new ApiError(499, 'client_closed_request', 'The client closed the request'));
    };
    return { queued, answer, cancel };
  }

  /** Streams the answer as OpenAI's chunks on the raw response (headers sent once the request is queued). */
  async function stream(kind: Kind, body: Body, req: InferenceRequest, reply: FastifyReply): Promise<void> {
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (choice: Record<string, unknown> | null, extra: Record<string, unknown> = {}) => ({
      id: req.id,
      object,
      created,
      model: body.model,
      choices: choice ? [{ index: 0, logprobs: null, finish_reason: null, ...choice }] : [],
      ...extra,
    });
    const res = reply.raw;
    let open = false;
    const write = (data: unknown) => {
      if (open && !res.writableEnded && !res.destroyed) res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    const { queued, answer, cancel } = run(req, (text) => write(chunk(kind === 'chat' ? { delta: { content: text } } : { text })));
    const finish = () => {
      cancel();
      app.streams.delete(finish);
      if (!res.writableEnded) res.end();
    };
    // 503 (no worker) and Redis errors come before the request is queued: they stay problem+json
    await queued.catch((e) => {
      answer.catch(() => {});
      throw e;
    });
    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
    });
    open = true;
    app.streams.add(finish);
    res.on('close', finish);
    if (kind === 'chat') write(chunk({ delta: { role: 'assistant', content: '' } }));
    try {
      const d = await answer;
      const last = kind === 'chat' ? { delta: {}, finish_reason: d.finish_reason } : { text: '', finish_reason: d.finish_reason };
      write(chunk({ ...last, ...labelsOf(d) }));
      if (body.stream_options?.include_usage) write(chunk(null, { usage: usageOf(d) }));
      write('[DONE]');
    } catch (e) {
      write(streamError(e as ApiError));
    }
    finish();
  }

  for (const kind of ['completion', 'chat'] as const) {
    app.post(
      kind === 'chat' ? '/v1/chat/completions' : '/v1/completions',
      {
        schema: {
          operationId: kind === 'chat' ? 'createChatCompletion' : 'createCompletion',
          summary:
            kind === 'chat'
              ? 'Chat with a tuned model (OpenAI chat completions)'
              : 'Complete a prompt with a tuned model (OpenAI completions)',
          tags: ['serving'],
          description: DESCRIPTION,
          body: ref(kind === 'chat' ? ChatCompletionCreate : CompletionCreate),
          response: {
            200: {
              description: 'the answer, or with `stream: true` a text/event-stream of chunks',
              content: {
                'application/json': { schema: ref(kind === 'chat' ? ChatCompletion : Completion) },
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            ...problems(
              400,
              401,
              404,
              [503, 'No worker serves the base model now (`model_not_loaded`, with Retry-After), or Redis is unavailable'],
              [504, 'No answer in time (`inference_timeout`)'],
            ),
          },
        },
      },
      async (request, reply) => {
        const body = request.body as Body;
        const served = await resolveServedModel(db, authOf(request).projectId, body.model);
        const req = inferenceRequest(kind, body, served);
        if (req.stream) return stream(kind, body, req, reply);
        const r = run(req, () => {});
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) r.cancel();
        });
        const d = await r.answer;
        return answerObject(kind, req.id, Math.floor(Date.now() / 1000), body.model, d);
      },
    );
  }
};

export default completions;
