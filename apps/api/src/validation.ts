/**
 * Request validation: bodies are validated strictly (no type coercion: `"5"` is not a number), while
 * querystrings, params and headers, which arrive as strings, are coerced. All errors are collected.
 * Numbers must be finite (a JSON `1e400` parses as Infinity), and no string may hold text PostgreSQL
 * cannot store ({@link rejectUnstorableText}).
 */
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifyRequest, FastifySchemaCompiler } from 'fastify';
import type { TSchema } from '@fastify/type-provider-typebox';
import { ApiError } from './errors.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** A validator compiler for Fastify with `schemas` (named, `$id`) resolvable by `$ref`. */
export function validatorCompiler(schemas: TSchema[]): FastifySchemaCompiler<unknown> {
  const make = (coerceTypes: Options['coerceTypes']) => {
    // strictNumbers refuses Infinity and NaN; with coercion Ajv would let a coerced "Infinity" skip its bounds
    const ajv = new Ajv({
      allErrors: true,
      removeAdditional: false,
      useDefaults: true,
      coerceTypes,
      strict: false,
      strictNumbers: !coerceTypes,
    });
    addFormats(ajv);
    ajv.addKeyword({ keyword: 'binary' });
    for (const s of schemas) ajv.addSchema(s as object);
    return ajv;
  };
  const strict = make(false),
    coercing = make('array');
  return ({ schema, httpPart }) =>
    (httpPart === 'body' ? strict : coercing).compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
}

// NUL: PostgreSQL text and jsonb refuse it; an unpaired surrogate: jsonb refuses its \u escape
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what it looks for
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string cannot be stored, or null. */
function unstorable(s: string): string | null {
  const m = UNSTORABLE.exec(s);
  if (!m) return null;
  return m[0] === '\u0000' ? 'must not contain NUL characters' : 'must be well-formed Unicode (an unpaired surrogate)';
}

/**
 * The first string (value or key) in `value` that cannot be stored, as [field, reason], or null. Walks with
 * a stack of its own: a body nested 100,000 levels deep must not overflow the call stack.
 */
export function findUnstorable(value: unknown, field: string): [string, string] | null {
  const todo: [unknown, string][] = [[value, field]];
  for (let next = todo.pop(); next; next = todo.pop()) {
    const [v, at] = next;
    if (typeof v === 'string') {
      const why = unstorable(v);
      if (why) return [at, why];
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) todo.push([v[i], `${at}[${i}]`]);
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v).reverse()) {
        const name = at ? `${at}.${k}` : k;
        const why = unstorable(k);
        if (why) return [name, `name ${why}`];
        todo.push([x, name]);
      }
    }
  }
  return null;
}

/**
 * Throws when `value` holds a string that cannot be stored ({@link findUnstorable}); `field` prefixes the
 * names of its fields ('' for none).
 * @throws ApiError 400 `invalid_request` naming the field (`param`)
 */
export function assertStorable(value: unknown, field: string): void {
  const bad = findUnstorable(value, field);
  if (!bad) return;
  const param = bad[0] || 'body';
  const message = `${param} ${bad[1]}`;
  throw new ApiError(400, 'invalid_request', `Invalid request: ${message}`, { param, errors: [{ param, message }] });
}

/**
 * preValidation hook: refuses a request whose path parameters, query or JSON body hold a string PostgreSQL
 * cannot store (a NUL character, an unpaired surrogate), before any route reads it.
 * @throws ApiError 400 `invalid_request` naming the field (`param`)
 */
export async function rejectUnstorableText(req: FastifyRequest): Promise<void> {
  assertStorable(req.params, '');
  assertStorable(req.query, '');
  assertStorable(req.body, '');
}
