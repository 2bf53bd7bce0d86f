/**
 * Request validation: bodies are validated strictly (no type coercion: `"5"` is not a number), while
 * querystrings, params and headers, which arrive as strings, are coerced. All errors are collected.
 */
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import type { TSchema } from '@fastify/type-provider-typebox';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** A validator compiler for Fastify with `schemas` (named, `$id`) resolvable by `$ref`. */
export function validatorCompiler(schemas: TSchema[]): FastifySchemaCompiler<unknown> {
  const make = (coerceTypes: Options['coerceTypes']) => {
    const ajv = new Ajv({ allErrors: true, removeAdditional: false, useDefaults: true, coerceTypes, strict: false });
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
