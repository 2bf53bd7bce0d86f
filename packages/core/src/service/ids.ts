/** Prefixed random ids (`file_…`, `ftjob_…`), as OpenAI-style APIs use. */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Random base62 string of `n` characters (rejection sampling, no modulo bias). */
export function randomString(n: number): string {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      if (b < 248 && out.length < n) out += ALPHABET[b % 62];
    }
  }
  return out;
}

/** Id prefixes by resource. */
export const ID_PREFIX = {
  project: 'proj',
  key: 'key',
  file: 'file',
  job: 'ftjob',
  event: 'evt',
  checkpoint: 'ckpt',
  adapter: 'adpt',
  blob: 'blob',
  policy: 'pol',
  recommendation: 'rec',
  webhook: 'wh',
  /** a webhook delivery: a Standard Webhooks message (its `webhook-id`) */
  delivery: 'msg',
} as const;

/** A new id `<prefix>_<24 base62 chars>`. */
export function newId(kind: keyof typeof ID_PREFIX): string {
  return `${ID_PREFIX[kind]}_${randomString(24)}`;
}
