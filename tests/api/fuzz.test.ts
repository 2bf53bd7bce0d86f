// Hostile input over every operation of openapi/openapi.json, sent as raw HTTP/1.1 (so NUL bytes, control
// characters, bad lengths and overlong lines reach the server as written): NUL bytes and control characters
// in path parameters, queries, headers and string fields, overlong strings, huge and non-finite numbers,
// wrong types, malformed JSON and multipart bodies, wrong content types. Every answer must be < 500, every
// 4xx problem+json whose `status` is the HTTP status, and a NUL in a parameter or field 400 `invalid_request`.
// Deterministic: the variants and their order come from the document and a seeded generator.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeModel, ADMIN_KEY, Client, createTestEnv, REPO_ROOT, startTestApi, type TestEnv } from '../helpers/service.js';

type Json = unknown;
interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  additionalProperties?: boolean | Schema;
  const?: unknown;
  enum?: unknown[];
}
interface Operation {
  operationId: string;
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}

const doc = JSON.parse(readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8')) as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
};

/** mulberry32: a small seeded generator, so every run sends the same requests. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(20);
const pick = <T>(xs: readonly T[], n: number): T[] => {
  const copy = [...xs];
  const out: T[] = [];
  while (out.length < n && copy.length) out.push(copy.splice(Math.floor(random() * copy.length), 1)[0]);
  return out;
};
const controlChar = () => String.fromCharCode(1 + Math.floor(random() * 31));

// ---- raw HTTP ----------------------------------------------------------------------------------------

/** The ids of real objects a path needs, filled in once the environment exists. */
interface Ids {
  file: string;
  job: string;
  model: string;
  project: string;
  key: string;
  webhook: string;
}
interface RawRequest {
  method: string;
  /** request target as sent (already percent-encoded where wanted) */
  target: string;
  headers?: [string, string][];
  body?: Buffer | string;
  /** sent instead of a computed Content-Length (null: none) */
  contentLength?: string | null;
  noAuth?: boolean;
}
interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

let port = 0;

/** Sends one request on its own connection (`Connection: close`) and parses the first response. */
function send(r: RawRequest): Promise<RawResponse> {
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
  const lines = [`${r.method} ${r.target} HTTP/1.1`, `host: 127.0.0.1:${port}`, 'connection: close'];
  if (!r.noAuth) lines.push(`authorization: Bearer ${ADMIN_KEY}`);
  for (const [k, v] of r.headers ?? []) lines.push(`${k}: ${v}`);
  const length = r.contentLength === undefined ? (body.length || r.method !== 'GET' ? String(body.length) : null) : r.contentLength;
  if (length !== null) lines.push(`content-length: ${length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 10 s')), 10_000);
    socket.on('data', (c) => {
      chunks.push(c);
      // an event stream stays open: its status and headers are the answer
      const got = Buffer.concat(chunks);
      const end = got.indexOf('\r\n\r\n');
      if (end > 0 && /content-type: text\/event-stream/i.test(got.subarray(0, end).toString('latin1'))) socket.destroy();
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      // the server may close after answering while the body is still being written
      if (chunks.length) resolve(parse(Buffer.concat(chunks)));
      else reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
    socket.write(Buffer.concat([head, body]));
  });
}

function parse(raw: Buffer): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP answer (${raw.length} bytes)`);
  const [statusLine, ...headerLines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const l of headerLines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = Number.parseInt(rest.subarray(0, nl).toString(), 16);
      if (!size) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    rest = Buffer.concat(parts);
  } else if (headers['content-length']) rest = rest.subarray(0, Number(headers['content-length']));
  return { status, headers, body: rest.toString('utf8') };
}

// ---- hostile values ----------------------------------------------------------------------------------

const LONG = 'x'.repeat(100_000);

/** Hostile path segments and query values, percent-encoded as sent. */
const hostileSegments = (): [string, string][] => [
  ['NUL', '%00'],
  ['NUL inside an id', 'ftjob_abc%00def'],
  ['control characters', encodeURIComponent(`${controlChar()}a${controlChar()}\x7f`)],
  ['invalid UTF-8', '%ff%fe%80'],
  ['lone surrogate as UTF-8', '%ED%A0%80'],
  ['broken escape', 'abc%E0%A4%A'],
  ['bare percent', '%'],
  ['200 characters', 'a'.repeat(200)],
  ['6000 characters', 'b'.repeat(6000)],
  ['dot segments', '..%2f..%2fetc%2fpasswd'],
  ['quote', "x'%20OR%201%3D1--"],
];
const hostileQueryValues = (): [string, string][] => [
  ...hostileSegments(),
  ['1e308', '1e308'],
  ['-1', '-1'],
  ['huge integer', '99999999999999999999999'],
  ['NaN', 'NaN'],
  ['Infinity', 'Infinity'],
  ['empty', ''],
];

/** Hostile JSON values for a field of this kind: [label, raw JSON text]. */
function hostileJson(kind: string): [string, string][] {
  const strings: [string, string][] = [
    ['NUL', JSON.stringify('a\u0000b')],
    ['only NUL', '"\\u0000"'],
    ['control characters', JSON.stringify(`${controlChar()}x${controlChar()}\u007f`)],
    ['lone surrogate', '"\\ud800x"'],
    ['100 kB string', JSON.stringify(LONG)],
  ];
  const numbers: [string, string][] = [
    ['1e308', '1e308'],
    ['-1e308', '-1e308'],
    ['1e400 (Infinity)', '1e400'],
    ['-1e400', '-1e400'],
    ['2^63', '9223372036854775808'],
    ['-1', '-1'],
    ['1.5', '1.5'],
    ['"NaN"', '"NaN"'],
    ['"Infinity"', '"Infinity"'],
  ];
  const wrong: [string, string][] = [
    ['null', 'null'],
    ['object', '{"a":1}'],
    ['array', '[1,"x"]'],
    ['boolean', 'true'],
  ];
  switch (kind) {
    case 'string':
      return [...strings, ['number', '1e308'], ...pick(wrong, 2)];
    case 'integer':
    case 'number':
      return [...numbers, ['NUL string', JSON.stringify('1\u0000')], ...pick(wrong, 2)];
    case 'boolean':
      return [
        ['"true"', '"true"'],
        ['2', '2'],
        ['NUL string', '"\\u0000"'],
      ];
    case 'array':
      return [
        ['string', '"a\\u0000"'],
        ['object', '{}'],
        ['10000 items', JSON.stringify(Array.from({ length: 10_000 }, () => 'x'))],
      ];
    default:
      return [
        ['string', '"a\\u0000"'],
        ['array', '[]'],
        ['number', '1e400'],
      ];
  }
}

// ---- the fields of a body schema ---------------------------------------------------------------------

const resolve = (s: Schema): Schema => (s.$ref ? resolve(doc.components.schemas[s.$ref.split('/').pop()!]) : s);

/** Leaf and object fields of a schema: [path, kind]. Unions contribute every branch; arrays their first item. */
function fields(s: Schema, path: (string | number)[] = [], depth = 0): [(string | number)[], string][] {
  s = resolve(s);
  if (depth > 6) return [];
  const out: [(string | number)[], string][] = [];
  for (const branch of [...(s.anyOf ?? []), ...(s.oneOf ?? [])]) out.push(...fields(branch, path, depth + 1));
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  if (type === 'object' || s.properties) {
    if (path.length) out.push([path, 'object']);
    for (const [k, v] of Object.entries(s.properties ?? {})) out.push(...fields(v, [...path, k], depth + 1));
    if (typeof s.additionalProperties === 'object') out.push(...fields(s.additionalProperties, [...path, 'extra'], depth + 1));
  } else if (type === 'array' && s.items) {
    out.push([path, 'array']);
    out.push(...fields(s.items, [...path, 0], depth + 1));
  } else if (type && s.const === undefined) out.push([path, type]);
  else if (s.enum || s.const !== undefined) out.push([path, 'string']);
  // one entry per path and kind
  const seen = new Set<string>();
  return out.filter(([p, k]) => {
    const key = `${p.join('.')}:${k}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** `base` with the field at `path` replaced by a marker, serialized with the marker swapped for raw JSON. */
function withField(base: Json, path: (string | number)[], raw: string): string {
  const MARK = '"__fuzz_marker__"';
  const copy = structuredClone(base) as Record<string | number, unknown>;
  let o = copy;
  for (const [i, k] of path.entries()) {
    if (i === path.length - 1) {
      o[k] = '__fuzz_marker__';
      break;
    }
    const next = path[i + 1];
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = typeof next === 'number' ? [] : {};
    o = o[k] as Record<string | number, unknown>;
  }
  return JSON.stringify(copy).replace(MARK, raw);
}

// ---- the variants of each operation ------------------------------------------------------------------

/** A valid body per JSON operation, so that each hostile field is checked past the others. */
const baseBodies = (ids: Ids): Record<string, Json> => {
  const job = {
    model: ids.model,
    training_file: ids.file,
    method: { type: 'edge_llm', edge_llm: { schedule: 'round_robin' } },
    hyperparameters: { max_steps: 8, batch_size: 2, lora_r: 4 },
  };
  return {
    createJob: job,
    fineTuningCreateJob: job,
    createCompletion: { model: `ft:${ids.model}:x:${ids.job}`, prompt: 'hello', max_tokens: 2 },
    createChatCompletion: { model: `ft:${ids.model}:x:${ids.job}`, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    createProject: { name: 'fuzz' },
    createApiKey: { name: 'fuzz' },
    createRecommendation: { training_file: ids.file, time_budget_s: 60, mode: 'estimate' },
    startRecommendation: { candidate: 0 },
    createWebhook: { url: 'http://127.0.0.1:9/hook', events: ['fine_tuning.job.succeeded'] },
  };
};

/** Real ids for path parameters: by the resource the path names. */
function realPathParam(path: string, name: string, ids: Ids): string {
  if (name === 'key_id') return ids.key;
  if (path.startsWith('/v1/files')) return ids.file;
  if (path.includes('/jobs')) return ids.job;
  if (path.startsWith('/v1/models')) return ids.model;
  if (path.startsWith('/v1/projects')) return ids.project;
  if (path.startsWith('/v1/webhooks')) return ids.webhook;
  return 'missing_id';
}

interface Variant {
  label: string;
  request: (ids: Ids) => RawRequest;
  /** the field holds a NUL: the answer must be 400 `invalid_request` */
  nul?: boolean;
}
const hasNul = (s: string) => s.includes('%00') || s.includes('\\u0000') || s.includes('\u0000');

const HEADERS_FOR_ALL = ['idempotency-key', 'last-event-id', 'range', 'if-range'];

function variantsOf(path: string, method: string, op: Operation): Variant[] {
  const out: Variant[] = [];
  const params = op.parameters ?? [];
  const pathParams = params.filter((p) => p.in === 'path').map((p) => p.name);
  // a DELETE aims past the real objects, which the other operations still need
  const real = (n: string, ids: Ids) => realPathParam(path, n, ids) + (method === 'delete' ? '0' : '');
  const target = (ids: Ids, pathOverride: Record<string, string> = {}, query = '') =>
    path.replace(/\{(\w+)\}/g, (_, n: string) => pathOverride[n] ?? encodeURIComponent(real(n, ids))) + query;
  const jsonType = op.requestBody?.content['application/json'];
  const body = (ids: Ids) => (jsonType ? JSON.stringify(baseBodies(ids)[op.operationId] ?? {}) : undefined);
  const jsonHeaders: [string, string][] = jsonType ? [['content-type', 'application/json']] : [];
  const base = (ids: Ids, extra: Partial<RawRequest> = {}): RawRequest => ({
    method: method.toUpperCase(),
    target: target(ids),
    headers: jsonHeaders,
    body: body(ids),
    ...extra,
  });

  for (const name of pathParams)
    for (const [label, v] of hostileSegments())
      out.push({ label: `path ${name}: ${label}`, nul: hasNul(v), request: (ids) => base(ids, { target: target(ids, { [name]: v }) }) });

  for (const q of params.filter((p) => p.in === 'query')) {
    for (const [label, v] of hostileQueryValues())
      out.push({
        label: `query ${q.name}: ${label}`,
        nul: hasNul(v),
        request: (ids) => base(ids, { target: target(ids, {}, `?${q.name}=${v}`) }),
      });
    out.push({
      label: `query ${q.name}: repeated`,
      request: (ids) => base(ids, { target: target(ids, {}, `?${q.name}=1&${q.name}=%00`) }),
    });
  }
  out.push({ label: 'query: unknown parameter with NUL', request: (ids) => base(ids, { target: target(ids, {}, '?zz%00=%00') }) });

  const headerNames = [...new Set([...params.filter((p) => p.in === 'header').map((p) => p.name), ...pick(HEADERS_FOR_ALL, 2)])];
  for (const h of headerNames) {
    const values: [string, string][] = [
      ['control character', `a${controlChar()}b`],
      ['DEL and latin-1', 'a\x7f\xff'],
      ['NUL', 'a\x00b'],
      ['8 kB', 'h'.repeat(8000)],
      ['20 kB', 'h'.repeat(20_000)],
      ['bytes=', 'bytes=99999999999999999999-1e308'],
    ];
    for (const [label, v] of values)
      out.push({ label: `header ${h}: ${label}`, request: (ids) => base(ids, { headers: [...jsonHeaders, [h, v]] }) });
  }
  out.push({
    label: 'authorization: NUL in the key',
    request: (ids) => base(ids, { noAuth: true, headers: [...jsonHeaders, ['authorization', `Bearer ${ADMIN_KEY}\x00`]] }),
  });
  out.push({
    label: 'authorization: 20 kB key',
    request: (ids) => base(ids, { noAuth: true, headers: [...jsonHeaders, ['authorization', `Bearer ${'k'.repeat(20_000)}`]] }),
  });

  if (jsonType) {
    // the /v1/fine_tuning aliases run the same handlers: a seeded third of their field variants
    const share = path.startsWith('/v1/fine_tuning/') ? 1 / 3 : 1;
    for (const [p, kind] of fields(jsonType.schema))
      for (const [label, raw] of hostileJson(kind).filter(() => random() < share))
        out.push({
          label: `body ${p.join('.')}: ${label}`,
          nul: hasNul(raw),
          request: (ids) => base(ids, { body: withField(baseBodies(ids)[op.operationId] ?? {}, p, raw) }),
        });
    const malformed: [string, string][] = [
      ['truncated', '{"a":'],
      ['trailing garbage', '{"a":1}}'],
      ['bare word', 'nul'],
      ['empty', ''],
      ['__proto__', '{"__proto__":{"admin":true}}'],
      ['constructor.prototype', '{"constructor":{"prototype":{"admin":true}}}'],
      ['BOM', '\ufeff{}'],
      ['NUL byte', '{"a":\u0000}'],
      ['array', '[]'],
      ['1e400', '1e400'],
      ['deep nesting', `${'['.repeat(5000)}${']'.repeat(5000)}`],
      ['nested 400,000 deep', `{"a":${'['.repeat(400_000)}${']'.repeat(400_000)}}`],
    ];
    for (const [label, raw] of malformed) out.push({ label: `JSON: ${label}`, request: (ids) => base(ids, { body: raw }) });
    const types: [string, string][] = [
      ['text/plain', 'text/plain'],
      ['form', 'application/x-www-form-urlencoded'],
      ['xml', 'application/xml'],
      ['utf-16 JSON', 'application/json; charset=utf-16'],
      ['multipart', 'multipart/form-data; boundary=x'],
      ['NUL in type', 'application/json\x00'],
      ['empty type', ''],
    ];
    for (const [label, ct] of types)
      out.push({ label: `content-type: ${label}`, request: (ids) => base(ids, { headers: [['content-type', ct]] }) });
  } else if (method !== 'get') {
    out.push({
      label: 'unexpected JSON body',
      request: (ids) => base(ids, { headers: [['content-type', 'application/json']], body: '{"a":"\\u0000"}' }),
    });
    out.push({ label: 'unexpected text body', request: (ids) => base(ids, { headers: [['content-type', 'text/plain']], body: 'x' }) });
  }
  if (op.requestBody?.content['multipart/form-data']) out.push(...multipartVariants(base));

  const lengths: [string, string][] = [
    ['not a number', 'abc'],
    ['negative', '-1'],
    ['huge', '99999999999999999999999'],
    ['two values', '1, 2'],
  ];
  for (const [label, v] of lengths) out.push({ label: `content-length: ${label}`, request: (ids) => base(ids, { contentLength: v }) });
  out.push({
    label: 'content-length: shorter than the body',
    request: (ids) => base(ids, { body: '{"name":"x"}', headers: [['content-type', 'application/json']], contentLength: '3' }),
  });
  out.push({
    label: 'transfer-encoding with content-length',
    request: (ids) => base(ids, { headers: [...jsonHeaders, ['transfer-encoding', 'chunked']], body: '0\r\n\r\n' }),
  });
  return out;
}

/** Multipart bodies for the upload operation. */
function multipartVariants(base: (ids: Ids, extra?: Partial<RawRequest>) => RawRequest): Variant[] {
  const B = 'fuzzboundary';
  const part = (headers: string, content: string) => `--${B}\r\n${headers}\r\n\r\n${content}\r\n`;
  const purpose = part('content-disposition: form-data; name="purpose"', 'fine-tune');
  const file = (filename: string, content = '{"prompt":"a","completion":"b"}\n') =>
    part(`content-disposition: form-data; name="file"; filename="${filename}"\r\ncontent-type: application/jsonl`, content);
  const typed = `multipart/form-data; boundary=${B}`;
  const cases: [string, string, string][] = [
    ['no boundary', 'multipart/form-data', `${purpose}${file('a.jsonl')}--${B}--\r\n`],
    ['empty boundary', 'multipart/form-data; boundary=', `${purpose}--${B}--\r\n`],
    ['other boundary', 'multipart/form-data; boundary=other', `${purpose}${file('a.jsonl')}--${B}--\r\n`],
    ['truncated', typed, `${purpose}--${B}\r\ncontent-disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{"pro`],
    ['truncated headers', typed, `--${B}\r\ncontent-disposition: form-da`],
    ['no closing boundary', typed, `${purpose}${file('a.jsonl')}`],
    ['missing file part', typed, `${purpose}--${B}--\r\n`],
    ['missing purpose', typed, `${file('a.jsonl')}--${B}--\r\n`],
    ['NUL in filename', typed, `${purpose}${file('a\x00b.jsonl')}--${B}--\r\n`],
    ['control characters in filename', typed, `${purpose}${file('a\x01\x1fb.jsonl')}--${B}--\r\n`],
    ['invalid UTF-8 filename', typed, `${purpose}${file('\xff\xfe.jsonl')}--${B}--\r\n`],
    ['10 kB filename', typed, `${purpose}${file(`${'f'.repeat(10_000)}.jsonl`)}--${B}--\r\n`],
    ['NUL in purpose', typed, `${part('content-disposition: form-data; name="purpose"', 'fine\x00tune')}${file('a.jsonl')}--${B}--\r\n`],
    ['NUL in the content', typed, `${purpose}${file('a.jsonl', '{"prompt":"a\\u0000","completion":"\x00"}\n')}--${B}--\r\n`],
    ['part without a name', typed, `${part('content-disposition: form-data', 'x')}--${B}--\r\n`],
    ['part without headers', typed, `--${B}\r\n\r\nx\r\n--${B}--\r\n`],
    ['two files', typed, `${purpose}${file('a.jsonl')}${file('b.jsonl')}--${B}--\r\n`],
    ['file as a field', typed, `${purpose}${part('content-disposition: form-data; name="file"', 'x')}--${B}--\r\n`],
    ['empty body', typed, ''],
    ['garbage', typed, '\x00\x01garbage'],
  ];
  return cases.map(([label, ct, body]) => ({
    label: `multipart: ${label}`,
    request: (ids: Ids) => base(ids, { headers: [['content-type', ct]], body: Buffer.from(body, 'latin1') }),
  }));
}

/** Requests that belong to no operation: the request line and the router. */
const generalVariants = (): Variant[] => [
  { label: '100 kB URL', request: () => ({ method: 'GET', target: `/v1/jobs/${'a'.repeat(100_000)}` }) },
  { label: '10 kB path parameter', request: () => ({ method: 'GET', target: `/v1/jobs/${'a'.repeat(10_000)}` }) },
  { label: '10 kB unknown path', request: () => ({ method: 'GET', target: `/${'a/'.repeat(5000)}` }) },
  { label: 'NUL in the request target', request: () => ({ method: 'GET', target: '/v1/jobs/a\x00b' }) },
  { label: 'space in the request target', request: () => ({ method: 'GET', target: '/v1/jobs/a b' }) },
  { label: 'unknown method', request: () => ({ method: 'FROB', target: '/v1/jobs' }) },
  { label: 'known method, no route', request: () => ({ method: 'PROPFIND', target: '/v1/jobs' }) },
  { label: 'TRACE', request: () => ({ method: 'TRACE', target: '/v1/jobs' }) },
  { label: 'absolute-form target', request: () => ({ method: 'GET', target: 'http://evil.example/v1/jobs' }) },
  { label: 'asterisk target', request: () => ({ method: 'OPTIONS', target: '*' }) },
  { label: 'malformed escape in the path', request: () => ({ method: 'GET', target: '/v1/%zz' }) },
  {
    label: '2 MB JSON body',
    request: () => ({
      method: 'POST',
      target: '/v1/projects',
      headers: [['content-type', 'application/json']],
      body: `"${'x'.repeat(2 << 20)}"`,
    }),
  },
  {
    label: 'content-length over the body limit, no body',
    request: () => ({
      method: 'POST',
      target: '/v1/projects',
      headers: [['content-type', 'application/json']],
      contentLength: String(1 << 30),
    }),
  },
  { label: 'header without a colon', request: () => ({ method: 'GET', target: '/v1/jobs', headers: [['x-a\x01', 'b']] }) },
  {
    label: '200 headers',
    request: () => ({ method: 'GET', target: '/v1/jobs', headers: Array.from({ length: 200 }, (_, i) => [`x-h${i}`, 'v']) }),
  },
  {
    label: '100 kB header block',
    request: () => ({ method: 'GET', target: '/v1/jobs', headers: Array.from({ length: 20 }, (_, i) => [`x-h${i}`, 'v'.repeat(5000)]) }),
  },
];

const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
  Object.entries(ops).map(([method, op]) => ({ path, method, op, variants: variantsOf(path, method, op) })),
);

// ---- the test ----------------------------------------------------------------------------------------

let t: TestEnv;
let api: { url: string; stop: () => Promise<void> };
let ids: Ids;

beforeAll(async () => {
  t = await createTestEnv({
    setupModels: (d) => fakeModel(join(d, 'tiny-llama')),
    // thousands of requests from one key and address: the rate limits would answer most of them
    env: { EDGETUNE_RATE_LIMIT_PER_KEY: '0', EDGETUNE_RATE_LIMIT_PER_ADDRESS: '0', EDGETUNE_AUTH_FAILURE_LIMIT: '0' },
  });
  api = await startTestApi(t);
  port = Number(new URL(api.url).port);
  const admin = new Client(api.url);
  const line = (i: number) => JSON.stringify({ prompt: `message ${i}\nAnswer:`, completion: i % 2 ? ' spam' : ' ham' });
  const file = (await admin.upload(`${Array.from({ length: 20 }, (_, i) => line(i)).join('\n')}\n`)).body.id;
  const job = await admin.post('/v1/jobs', { model: 'tiny-llama', training_file: file, hyperparameters: { max_steps: 8 } });
  const project = (await admin.get('/v1/projects')).body.data[0].id;
  const key = await admin.post(`/v1/projects/${project}/keys`, { name: 'fuzz' });
  const webhook = await admin.post('/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['fine_tuning.job.succeeded'] });
  ids = { file, job: job.body.id, model: 'tiny-llama', project, key: key.body.id, webhook: webhook.body.id };
  for (const [what, v] of Object.entries(ids))
    if (typeof v !== 'string') throw new Error(`setup: no ${what} id: ${JSON.stringify(job.body)}`);
});

afterAll(async () => {
  await api?.stop();
  await t?.destroy();
});

/** Sends the variants (a few at a time) and returns a line per answer that breaks the rules. */
async function run(variants: Variant[]): Promise<string[]> {
  const bad: string[] = [];
  const queue = [...variants];
  const check = async (v: Variant) => {
    let r: RawResponse;
    try {
      r = await send(v.request(ids));
    } catch (e) {
      bad.push(`${v.label}: ${(e as Error).message}`);
      return;
    }
    if (r.status >= 500) bad.push(`${v.label}: ${r.status} ${r.body.slice(0, 200)}`);
    else if (v.nul && (r.status !== 400 || !r.body.includes('"invalid_request"')))
      bad.push(`${v.label}: ${r.status}, not 400 invalid_request: ${r.body.slice(0, 200)}`);
    else if (r.status >= 400) {
      let problem: { code?: unknown; status?: unknown } = {};
      try {
        problem = JSON.parse(r.body);
      } catch {
        /* reported below */
      }
      if (
        !/^application\/problem\+json/.test(r.headers['content-type'] ?? '') ||
        typeof problem.code !== 'string' ||
        problem.status !== r.status
      )
        bad.push(`${v.label}: ${r.status} not problem+json: ${r.headers['content-type']} ${r.body.slice(0, 200)}`);
    }
  };
  const workers = Array.from({ length: 8 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await check(next);
  });
  await Promise.all(workers);
  return bad;
}

describe('hostile input: every answer < 500, every 4xx problem+json', () => {
  for (const { path, method, variants } of operations) {
    it(`${method.toUpperCase()} ${path}: ${variants.length} requests`, async () => {
      const bad = await run(variants);
      expect(bad.length, `${bad.length} of ${variants.length} requests broke the rules:\n${bad.join('\n')}`).toBe(0);
    });
  }
  const general = generalVariants();
  it(`request line, headers and router: ${general.length} requests`, async () => {
    const bad = await run(general);
    expect(bad.length, `${bad.length} of ${general.length} requests broke the rules:\n${bad.join('\n')}`).toBe(0);
  });
  const all = operations.flatMap((o) => o.variants);
  const nul = all.filter((v) => v.nul).length;
  it(`sends ${all.length + general.length} requests over ${operations.length} operations, ${nul} with a NUL in a field`, () => {
    expect(operations.length).toBeGreaterThanOrEqual(40);
    expect(nul).toBeGreaterThan(300);
  });
});

describe('hostile input: the answers name the fault', () => {
  const problemOf = async (r: RawRequest) => {
    const res = await send(r);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    return { status: res.status, ...(JSON.parse(res.body) as { code: string; status: number; param: string | null; detail: string }) };
  };
  const post = (target: string, body: unknown): RawRequest => ({
    method: 'POST',
    target,
    headers: [['content-type', 'application/json']],
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const job = (patch: Record<string, unknown>) => ({ model: ids.model, training_file: ids.file, ...patch });

  it('a NUL in a path parameter, a query value or a body field is 400 invalid_request naming the field', async () => {
    expect(await problemOf({ method: 'GET', target: '/v1/jobs/ftjob_a%00b' })).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'id',
    });
    expect(await problemOf({ method: 'GET', target: '/v1/jobs?after=%00' })).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'after',
    });
    expect(await problemOf(post('/v1/jobs', job({ metadata: { team: 'a\u0000' } })))).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'metadata.team',
    });
    expect(await problemOf(post('/v1/projects', '{"name":"\\ud800"}'))).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'name',
    });
  });

  it('integers past their bounds and non-finite numbers are 400 invalid_request naming the field', async () => {
    const cases: [Record<string, unknown> | string, string][] = [
      [job({ method: { type: 'edge_llm', edge_llm: { head_rank: 4096 } } }), 'method.edge_llm.head_rank'],
      [job({ hyperparameters: { lora_alpha: 1e308 } }), 'hyperparameters.lora_alpha'],
      [job({ hyperparameters: { warmup_steps: 1e308 } }), 'hyperparameters.warmup_steps'],
      [job({ checkpointing: { every_n_steps: 2 ** 63 } }), 'checkpointing.every_n_steps'],
      [job({ device: { memory_budget_bytes: 1e308 } }), 'device.memory_budget_bytes'],
      [
        JSON.stringify(job({ hyperparameters: { max_grad_norm: 1 } })).replace('"max_grad_norm":1', '"max_grad_norm":1e400'),
        'hyperparameters.max_grad_norm',
      ],
    ];
    for (const [body, param] of cases)
      expect(await problemOf(post('/v1/jobs', body)), param).toMatchObject({ status: 400, code: 'invalid_request', param });
    expect(await problemOf({ method: 'GET', target: '/v1/jobs?limit=Infinity' })).toMatchObject({ status: 400, param: 'limit' });
  });

  it('a malformed multipart body is 400 invalid_multipart; a NUL in a file name 400 invalid_request', async () => {
    const upload = (contentType: string, body: string): RawRequest => ({
      method: 'POST',
      target: '/v1/files',
      headers: [['content-type', contentType]],
      body: Buffer.from(body, 'latin1'),
    });
    const purpose = '--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n';
    expect(await problemOf(upload('multipart/form-data', purpose))).toMatchObject({ status: 400, code: 'invalid_multipart' });
    expect(await problemOf(upload('multipart/form-data; boundary=b', `${purpose}--b\r\ncontent-disposition: form-da`))).toMatchObject({
      status: 400,
      code: 'invalid_multipart',
    });
    const file =
      '--b\r\ncontent-disposition: form-data; name="file"; filename="a\x00.jsonl"\r\n\r\n{"prompt":"a","completion":"b"}\r\n--b--\r\n';
    expect(await problemOf(upload('multipart/form-data; boundary=b', purpose + file))).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'file',
    });
  });

  it("the router's and the HTTP parser's errors are problem+json with stable codes", async () => {
    expect(await problemOf({ method: 'GET', target: `/v1/jobs/${'a'.repeat(200)}` })).toMatchObject({ status: 414, code: 'uri_too_long' });
    expect(await problemOf({ method: 'GET', target: '/v1/jobs/%ff' })).toMatchObject({ status: 400, code: 'invalid_url' });
    expect(await problemOf({ method: 'GET', target: `/v1/jobs/${'a'.repeat(100_000)}` })).toMatchObject({
      status: 431,
      code: 'headers_too_large',
    });
    expect(await problemOf({ method: 'POST', target: '/v1/projects', contentLength: 'abc' })).toMatchObject({
      status: 400,
      code: 'bad_request',
    });
    expect(await problemOf({ method: 'GET', target: '/v1/jobs', headers: [['x-a', 'b\x01']] })).toMatchObject({
      status: 400,
      code: 'bad_request',
    });
  });
});
