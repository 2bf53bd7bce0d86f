// Assertions shared by the Idempotency-Key race tests.
import { expect } from 'vitest';
import type { Res } from './service.js';

/**
 * Of responses to requests that raced under one Idempotency-Key: exactly one ran (201, not replayed); each other
 * one replays its answer (same id) or answers 409 `idempotency_key_in_use`. Returns the one that ran.
 */
export function expectOneRan(rs: Res[]): Res {
  const ran = rs.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === null);
  expect(ran, JSON.stringify(rs.map((r) => [r.status, r.body.code]))).toHaveLength(1);
  for (const r of rs) {
    if (r === ran[0]) continue;
    if (r.status === 201)
      expect(r.body.id).toBe(ran[0].body.id); // replayed after the winner stored its answer
    else expect([r.status, r.body.code]).toEqual([409, 'idempotency_key_in_use']);
  }
  return ran[0];
}
