/**
 * `@edgetune/client`: a typed client of the edgetune REST API. Requests and responses are typed from
 * `openapi/openapi.json` (openapi-typescript) and sent by openapi-fetch; this module adds bearer auth,
 * problem+json errors as {@link EdgetuneApiError}, and what openapi-fetch does not do: multipart upload,
 * a job's Server-Sent Events stream (with Last-Event-ID reconnection) and streamed adapter downloads.
 */
import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from './generated/schema.js';
import { readSse, type SseMessage } from './sse.js';

export type { components, paths, operations } from './generated/schema.js';
export type { SseMessage } from './sse.js';

type Schemas = components['schemas'];
export type FileObject = Schemas['File'];
export type Job = Schemas['Job'];
export type JobCreate = Schemas['JobCreate'];
export type JobDryRun = Schemas['JobDryRun'];
export type JobEvent = Schemas['JobEvent'];
export type Model = Schemas['Model'];
export type Worker = Schemas['Worker'];
export type ApiKey = Schemas['ApiKey'];
export type Problem = Schemas['Problem'];
/** A job's status (`validating_files -> queued -> running -> succeeded | failed | cancelling -> cancelled`). */
export type JobStatus = Job['status'];

/** An error answer of the API (RFC 9457 problem details): HTTP `status`, the stable `code`, `detail` and `param`. */
export class EdgetuneApiError extends Error {
  override name = 'EdgetuneApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly param: string | null,
    /** the whole problem object (with `errors` for validation failures) */
    readonly problem: Partial<Problem> & Record<string, unknown>,
  ) {
    super(`${detail} (${status} ${code}${param ? `, param ${param}` : ''})`);
  }
}

/** The API could not be reached (connection refused, DNS, TLS, aborted by the network). */
export class EdgetuneConnectionError extends Error {
  override name = 'EdgetuneConnectionError';
}

/** Options of {@link createEdgetuneClient}. */
export interface EdgetuneClientOptions {
  /** the API's origin, e.g. `http://localhost:8080` (a trailing slash is ignored) */
  baseUrl: string;
  /** an API key (`et-...`), sent as `Authorization: Bearer` */
  apiKey?: string;
  /** fetch to use (default: the global one) */
  fetch?: typeof fetch;
}

/** What {@link EdgetuneClient.streamJobEvents} yields: an SSE message whose `data` is parsed JSON. */
export interface JobStreamMessage {
  /** the event id (`evt_...`), absent on the final `end` message */
  id?: string;
  /** `message`, `metrics` or `status` (a {@link JobEvent}), or `end` (data `{status}`) */
  event: string;
  data: JobEvent | { status: JobStatus | null };
}

/** Options of {@link EdgetuneClient.streamJobEvents}. */
export interface StreamOptions {
  /** resume after this event id (sent as `Last-Event-ID`) */
  lastEventId?: string;
  signal?: AbortSignal;
  /** consecutive failed reconnections before giving up (default 10) */
  maxRetries?: number;
  /** called before each reconnection with the attempt number (1-based) and the error or `null` (the stream ended early) */
  onReconnect?: (attempt: number, error: unknown) => void;
}

/** A streamed adapter download. */
export interface AdapterDownload {
  body: ReadableStream<Uint8Array>;
  /** the file name the API proposes (Content-Disposition), e.g. `ftjob_x-bundle.tar` */
  filename: string | null;
  /** bytes, when the API sent Content-Length */
  bytes: number | null;
}

/** The typed client: openapi-fetch's `GET`/`POST`/`DELETE`/... on {@link paths}, plus helpers. */
export interface EdgetuneClient extends Client<paths> {
  readonly baseUrl: string;
  /** `POST /v1/files` (multipart): uploads JSONL `content` as `filename`. @throws EdgetuneApiError (e.g. 422 with the bad line) */
  uploadFile(content: Blob | Uint8Array | string, filename: string, purpose?: 'fine-tune'): Promise<FileObject>;
  /**
   * `GET /v1/jobs/{id}/events/stream`: yields the job's events, then the `end` message, and returns.
   * A dropped stream is reopened with `Last-Event-ID` after the server's `retry` delay, so no event is lost or repeated.
   * @throws EdgetuneApiError for a 4xx answer (404: no such job), or the last error after `maxRetries` failed reconnections
   */
  streamJobEvents(jobId: string, opts?: StreamOptions): AsyncGenerator<JobStreamMessage, void, undefined>;
  /** `GET /v1/jobs/{id}/adapter?format=`: the voted adapter as a tar stream. @throws EdgetuneApiError (409 before the job succeeded) */
  downloadAdapter(jobId: string, opts?: { format?: 'peft' | 'bundle'; signal?: AbortSignal }): Promise<AdapterDownload>;
}

/** Turns an error response into an {@link EdgetuneApiError} (a non-problem body becomes its text or status line). */
export async function toApiError(res: Response): Promise<EdgetuneApiError> {
  const text = await res.text().catch(() => '');
  let p: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object') p = parsed as Record<string, unknown>;
  } catch {
    /* not JSON: a proxy's page, say */
  }
  const str = (x: unknown) => (typeof x === 'string' && x ? x : null);
  const detail = str(p.detail) ?? str(p.title) ?? str(p.message) ?? (text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}`);
  return new EdgetuneApiError(res.status, str(p.code) ?? `http_${res.status}`, detail, str(p.param), p);
}

/** Wraps a failed fetch (network level) as an {@link EdgetuneConnectionError} naming the URL and the cause's code. */
function connectionError(url: string, err: unknown): unknown {
  if (err instanceof Error && err.name === 'AbortError') return err;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message;
  return new EdgetuneConnectionError(`cannot reach ${url}: ${why}`);
}

/** The data of an openapi-fetch answer (the client throws for error answers, so it is always there). */
export async function ok<T>(p: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const r = await p;
  return r.data as T;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/**
 * A client for the API at `baseUrl`. Every call rejects with {@link EdgetuneApiError} when the API answers
 * with an error status, and with {@link EdgetuneConnectionError} when it cannot be reached.
 */
export function createEdgetuneClient(opts: EdgetuneClientOptions): EdgetuneClient {
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? globalThis.fetch;
  const auth: Record<string, string> = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  const api = createClient<paths>({ baseUrl, headers: auth, fetch: (r) => doFetch(r) });
  const errors: Middleware = {
    async onResponse({ response }) {
      if (!response.ok) throw await toApiError(response);
    },
    onError({ error, request }) {
      return connectionError(request.url, error) as Error;
    },
  };
  api.use(errors);

  /** A raw request with the client's auth and error handling. */
  async function send(path: string, init: RequestInit = {}): Promise<Response> {
    const url = baseUrl + path;
    let res: Response;
    try {
      res = await doFetch(url, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });
    } catch (e) {
      throw connectionError(url, e);
    }
    if (!res.ok) throw await toApiError(res);
    return res;
  }

  async function uploadFile(
    content: Blob | Uint8Array | string,
    filename: string,
    purpose: 'fine-tune' = 'fine-tune',
  ): Promise<FileObject> {
    const form = new FormData();
    form.append('purpose', purpose);
    form.append('file', content instanceof Blob ? content : new Blob([content as BlobPart]), filename);
    return (await send('/v1/files', { method: 'POST', body: form })).json() as Promise<FileObject>;
  }

  async function* streamJobEvents(jobId: string, o: StreamOptions = {}): AsyncGenerator<JobStreamMessage, void, undefined> {
    let lastId = o.lastEventId;
    let retryMs = 2000;
    let failures = 0;
    const path = `/v1/jobs/${encodeURIComponent(jobId)}/events/stream`;
    for (;;) {
      let problem: unknown = null;
      try {
        const ac = new AbortController();
        const onAbort = () => ac.abort();
        o.signal?.addEventListener('abort', onAbort, { once: true });
        try {
          const res = await send(path, {
            headers: { accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
            signal: ac.signal,
          });
          if (!res.body) throw new EdgetuneConnectionError(`empty event stream from ${baseUrl}${path}`);
          for await (const m of readSse(res.body)) {
            if (m.retry !== undefined) retryMs = m.retry;
            if (m.data === undefined || m.data === '') continue;
            failures = 0;
            const msg = toStreamMessage(m);
            if (msg.id) lastId = msg.id;
            yield msg;
            if (msg.event === 'end') return;
          }
        } finally {
          ac.abort();
          o.signal?.removeEventListener('abort', onAbort);
        }
      } catch (e) {
        // 4xx will not change on a retry; 5xx (an API restarting behind a proxy) may
        if ((e instanceof EdgetuneApiError && e.status < 500) || o.signal?.aborted) throw e;
        problem = e;
      }
      if (o.signal?.aborted) return;
      // the stream dropped (or could not be opened) before `end`: reopen it after the last event seen
      if (++failures > (o.maxRetries ?? 10))
        throw problem ?? new EdgetuneConnectionError(`event stream of ${jobId} kept ending before its end event`);
      o.onReconnect?.(failures, problem);
      await sleep(retryMs, o.signal);
    }
  }

  async function downloadAdapter(jobId: string, o: { format?: 'peft' | 'bundle'; signal?: AbortSignal } = {}): Promise<AdapterDownload> {
    const res = await send(
      `/v1/jobs/${encodeURIComponent(jobId)}/adapter?format=${o.format ?? 'peft'}`,
      o.signal ? { signal: o.signal } : {},
    );
    const cd = res.headers.get('content-disposition') ?? '';
    const len = res.headers.get('content-length');
    return {
      body: res.body ?? new Blob([]).stream(),
      filename: /filename="?([^";]+)"?/.exec(cd)?.[1] ?? null,
      bytes: len === null ? null : Number(len),
    };
  }

  return Object.assign(api, { baseUrl, uploadFile, streamJobEvents, downloadAdapter });
}

function toStreamMessage(m: SseMessage): JobStreamMessage {
  return { ...(m.id ? { id: m.id } : {}), event: m.event, data: JSON.parse(m.data!) };
}
