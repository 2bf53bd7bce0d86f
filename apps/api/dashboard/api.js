// The REST API as the dashboard calls it: same origin, `Authorization: Bearer <key>` from sessionStorage,
// problem+json errors as ApiProblem, adapter downloads through a blob, and job events over SSE.
import { fetchEventSource } from '@microsoft/fetch-event-source';

const KEY = 'edgetune.api_key';

/** The API key of this browser session, or null when signed out. */
export const apiKey = () => sessionStorage.getItem(KEY);

/** Keeps `key` for this browser session (sessionStorage: gone when the tab closes). */
export function signIn(key) {
  sessionStorage.setItem(KEY, key);
  window.dispatchEvent(new Event('edgetune:auth'));
}

/** Forgets the key. */
export function signOut() {
  sessionStorage.removeItem(KEY);
  window.dispatchEvent(new Event('edgetune:auth'));
}

/** An error answer: `status` and the RFC 9457 problem document (`code`, `detail`, `errors[]`). */
export class ApiProblem extends Error {
  constructor(status, problem) {
    const p = typeof problem === 'object' && problem ? problem : { detail: String(problem || `HTTP ${status}`) };
    super(p.detail ?? p.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = p;
  }
}

const auth = (key = apiKey()) => ({ authorization: `Bearer ${key}` });

async function body(r) {
  const type = r.headers.get('content-type') ?? '';
  return type.includes('json') ? r.json() : r.text();
}

/**
 * Calls the API: `json` is sent as the body, `form` (FormData) as multipart. Returns the parsed answer.
 * Throws ApiProblem on an error status; a 401 also signs out (the key was revoked or mistyped).
 */
export async function api(path, { method = 'GET', json, form, key } = {}) {
  const headers = auth(key);
  let payload = form;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(json);
  }
  const r = await fetch(path, { method, headers, body: payload });
  const data = await body(r);
  if (!r.ok) {
    if (r.status === 401 && !key) signOut();
    throw new ApiProblem(r.status, data);
  }
  return data;
}

/** Every event of a job, oldest first (pages of 1000). */
export async function allEvents(jobId) {
  const out = [];
  let after = '';
  for (;;) {
    const page = await api(`/v1/jobs/${jobId}/events?limit=1000${after ? `&after=${after}` : ''}`);
    out.push(...page.data);
    if (!page.has_more || !page.data.length) return out;
    after = page.data.at(-1).id;
  }
}

/**
 * Downloads an authenticated file: fetches it with the key, then saves the blob under the server's filename
 * (EventSource-style links cannot carry an Authorization header).
 */
export async function download(path) {
  const r = await fetch(path, { headers: auth() });
  if (!r.ok) throw new ApiProblem(r.status, await body(r));
  const name = /filename="([^"]+)"/.exec(r.headers.get('content-disposition') ?? '')?.[1] ?? path.split('/').pop();
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Follows a job's events over SSE from after event `after`: `onEvent(event)` for each, `onEnd({status})` once
 * the job is finished. Reconnects with Last-Event-ID after a network error. Returns a function that stops it.
 */
export function followEvents(jobId, after, onEvent, onEnd) {
  const ctrl = new AbortController();
  fetchEventSource(`/v1/jobs/${jobId}/events/stream${after ? `?after=${after}` : ''}`, {
    headers: { ...auth(), accept: 'text/event-stream' },
    signal: ctrl.signal,
    openWhenHidden: true,
    async onopen(r) {
      if (!r.ok) throw new ApiProblem(r.status, await body(r));
    },
    onmessage(m) {
      if (!m.data) return; // the `retry` frame
      if (m.event === 'end') {
        ctrl.abort();
        onEnd(JSON.parse(m.data));
      } else onEvent(JSON.parse(m.data));
    },
    onerror(e) {
      if (e instanceof ApiProblem) throw e; // no retry for an error answer
    },
  }).catch(() => {});
  return () => ctrl.abort();
}
