/**
 * Training data in JSONL: one record a line, either `{"prompt", "completion"}` or OpenAI chat `{"messages"}`.
 * Validation is strict and names the line, so an upload can be refused with a message the user can act on.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

/** A prompt/completion record; the loss covers the completion only. */
export interface PromptCompletionRecord {
  prompt: string;
  completion: string;
}

/** A chat record; the last message is the assistant turn the loss covers. */
export interface ChatRecord {
  messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;
}

/** One validated training example. Unknown extra keys of the input line are dropped. */
export type TrainingRecord = PromptCompletionRecord | ChatRecord;

/** Whether `rec` is the chat form. */
export function isChatRecord(rec: TrainingRecord): rec is ChatRecord {
  return 'messages' in rec;
}

/** The answer text of a record: the completion, or the content of the final assistant message. */
export function recordAnswer(rec: TrainingRecord): string {
  return isChatRecord(rec) ? rec.messages[rec.messages.length - 1]!.content : rec.completion;
}

/**
 * The distinct answers of a classification dataset (completions, or final assistant contents), sorted, exactly
 * as written (e.g. `[' ham', ' spam']`, leading space kept since it is part of the tokens to score).
 * Returns null when there are more than `maxLabels` (default 32) distinct answers: not a classification task.
 */
export function classificationLabels(records: Iterable<TrainingRecord>, opts: { maxLabels?: number } = {}): string[] | null {
  const max = opts.maxLabels ?? 32;
  const seen = new Set<string>();
  for (const rec of records) {
    seen.add(recordAnswer(rec));
    if (seen.size > max) return null;
  }
  return [...seen].sort();
}

/** Error codes of {@link DatasetError}. */
export type DatasetErrorCode = 'invalid_json' | 'invalid_record' | 'empty_file';

/**
 * A dataset that can't be used. `line` is 1-based (0 for whole-file problems such as `empty_file`);
 * `message` starts with `line N: ` (prefixed by `source: ` when a source name was given);
 * `param` points into the record (`messages[2].role`) when the problem is one field.
 */
export class DatasetError extends Error {
  readonly code: DatasetErrorCode;
  readonly line: number;
  readonly param: string | null;
  readonly source: string | null;
  constructor(code: DatasetErrorCode, line: number, detail: string, opts: { param?: string | null; source?: string | null } = {}) {
    const where = line > 0 ? `line ${line}: ` : '';
    super(`${opts.source ? `${opts.source}: ` : ''}${where}${detail}`);
    this.name = 'DatasetError';
    this.code = code;
    this.line = line;
    this.param = opts.param ?? null;
    this.source = opts.source ?? null;
  }
}

const ROLES = new Set(['system', 'user', 'assistant']);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * Validates one parsed JSON value as a {@link TrainingRecord} (returns a copy holding only the known fields).
 * @throws DatasetError `invalid_record` naming `line`.
 */
export function validateRecord(value: unknown, line: number, source?: string): TrainingRecord {
  const fail = (detail: string, param?: string): never => {
    throw new DatasetError('invalid_record', line, detail, { param: param ?? null, source: source ?? null });
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(`expected a JSON object, got ${describe(value)}`);
  }
  const obj = value as Record<string, unknown>;
  const hasMessages = 'messages' in obj;
  const hasPc = 'prompt' in obj || 'completion' in obj;
  if (hasMessages && hasPc) return fail('record has both "messages" and "prompt"/"completion"; use one format');
  if (hasMessages) {
    const msgs = obj.messages;
    if (!Array.isArray(msgs)) return fail(`"messages" must be an array, got ${describe(msgs)}`, 'messages');
    if (msgs.length === 0) return fail('"messages" is empty', 'messages');
    const out: ChatRecord['messages'] = [];
    msgs.forEach((m, i) => {
      const p = `messages[${i}]`;
      if (typeof m !== 'object' || m === null || Array.isArray(m)) return fail(`${p} must be an object, got ${describe(m)}`, p);
      const { role, content } = m as Record<string, unknown>;
      if (typeof role !== 'string' || !ROLES.has(role)) {
        return fail(`${p}.role must be "system", "user" or "assistant", got ${JSON.stringify(role) ?? 'nothing'}`, `${p}.role`);
      }
      if (typeof content !== 'string') return fail(`${p}.content must be a string, got ${describe(content)}`, `${p}.content`);
      out.push({ role: role as 'system' | 'user' | 'assistant', content });
    });
    const last = out[out.length - 1]!;
    if (last.role !== 'assistant') {
      return fail(`the last message must be the assistant's answer, got role "${last.role}"`, `messages[${out.length - 1}].role`);
    }
    if (last.content.length === 0) return fail('the final assistant message is empty', `messages[${out.length - 1}].content`);
    return { messages: out };
  }
  if (hasPc) {
    const { prompt, completion } = obj;
    if (typeof prompt !== 'string') return fail(`"prompt" must be a string, got ${describe(prompt)}`, 'prompt');
    if (typeof completion !== 'string') return fail(`"completion" must be a string, got ${describe(completion)}`, 'completion');
    if (completion.length === 0) return fail('"completion" is empty', 'completion');
    return { prompt, completion };
  }
  const keys = Object.keys(obj);
  return fail(
    keys.length === 0
      ? 'empty record; expected {"prompt", "completion"} or {"messages"}'
      : `expected {"prompt", "completion"} or {"messages"}, got keys ${keys
          .slice(0, 5)
          .map((k) => JSON.stringify(k))
          .join(', ')}`,
  );
}

/**
 * Parses one JSONL line. Returns null for a blank line (whitespace only).
 * @throws DatasetError `invalid_json` or `invalid_record` naming `line`.
 */
export function parseJsonlLine(text: string, line: number, source?: string): TrainingRecord | null {
  if (text.trim().length === 0) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DatasetError('invalid_json', line, `invalid JSON: ${(err as Error).message}`, { source: source ?? null });
  }
  return validateRecord(value, line, source);
}

/**
 * Parses a whole JSONL text (LF or CRLF, optional UTF-8 BOM). Blank lines are skipped.
 * @param source name used in error messages (e.g. the file name).
 * @throws DatasetError on the first bad line, or `empty_file` when there is no record at all.
 */
export function parseJsonlText(text: string, source?: string): TrainingRecord[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const out: TrainingRecord[] = [];
  lines.forEach((l, i) => {
    const rec = parseJsonlLine(l, i + 1, source);
    if (rec) out.push(rec);
  });
  if (out.length === 0) throw new DatasetError('empty_file', 0, 'the file has no records', { source: source ?? null });
  return out;
}

/**
 * Streams a JSONL file record by record (constant memory). Same rules and errors as {@link parseJsonlText};
 * errors name the file.
 */
export async function* readJsonl(path: string): AsyncGenerator<{ line: number; record: TrainingRecord }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  let count = 0;
  try {
    for await (const raw of rl) {
      line++;
      const rec = parseJsonlLine(line === 1 ? raw.replace(/^\uFEFF/, '') : raw, line, path);
      if (rec) {
        count++;
        yield { line, record: rec };
      }
    }
  } finally {
    rl.close();
  }
  if (count === 0) throw new DatasetError('empty_file', 0, 'the file has no records', { source: path });
}

/** Reads a whole JSONL file into memory. Same errors as {@link readJsonl}. */
export async function readJsonlFile(path: string): Promise<TrainingRecord[]> {
  const out: TrainingRecord[] = [];
  for await (const { record } of readJsonl(path)) out.push(record);
  return out;
}
