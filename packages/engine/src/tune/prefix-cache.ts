/**
 * Per-example cache of the frozen prefix's output (the input of a window), float32 in JS memory, so
 * that later epochs skip the prefix forward. Valid only for a prefix that never changes (the backbone
 * without LoRA): right padding and causal attention make an example's prefix output independent of its
 * batch-mates, so rows cached from one micro-batch are exact in any other.
 */
import type { Batch } from './batches.js';

/**
 * Prefix outputs keyed by window start (the first layer they feed) and example index; each entry holds
 * the example's real tokens only, [len, hidden] row-major. Counts hits and misses per example.
 */
export class PrefixCache {
  private readonly byStart = new Map<number, Map<number, Float32Array>>();
  /** examples served from the cache */
  hits = 0;
  /** examples whose prefix output was computed and stored */
  misses = 0;

  /** @param hiddenSize width of a row (the model's hidden size) */
  constructor(readonly hiddenSize: number) {}

  /**
   * The prefix output feeding layer `start` for every row of `batch`, [batch*seq, hidden] row-major
   * with zero rows on padding, when every example is cached; null otherwise (nothing counted then).
   * @throws Error when the batch carries no example indices
   */
  get(start: number, batch: Batch): Float32Array | null {
    const store = this.byStart.get(start),
      indices = indicesOf(batch);
    const rows = indices.map((i) => store?.get(i));
    if (rows.some((r) => !r)) return null;
    const d = this.hiddenSize,
      T = batch.ids[0].length;
    this.hits += indices.length;
    const buf = new Float32Array(batch.ids.length * T * d);
    rows.forEach((r, b) => {
      buf.set(r as Float32Array, b * T * d);
    });
    return buf;
  }

  /**
   * Stores the real-token rows of the examples not yet cached.
   * @param data the prefix output of `batch` feeding layer `start`, [batch*seq, hidden] row-major
   * @throws Error when the batch carries no example indices
   */
  put(start: number, batch: Batch, data: Float32Array): void {
    let store = this.byStart.get(start);
    if (!store) {
      store = new Map();
      this.byStart.set(start, store);
    }
    const d = this.hiddenSize,
      T = batch.ids[0].length;
    indicesOf(batch).forEach((i, b) => {
      if (store.has(i)) return;
      const len = batch.mask[b].reduce((n, x) => n + x, 0);
      store.set(i, data.slice(b * T * d, (b * T + len) * d));
      this.misses++;
    });
  }

  /** Frees the entries of every window start except `keep` (a window that will not be trained again). */
  evict(keep: number): void {
    for (const start of [...this.byStart.keys()]) if (start !== keep) this.byStart.delete(start);
  }

  /** Bytes held by the cached rows. */
  get bytes(): number {
    let n = 0;
    for (const s of this.byStart.values()) for (const a of s.values()) n += a.byteLength;
    return n;
  }
}

function indicesOf(batch: Batch): number[] {
  if (!batch.indices) throw new Error('prefix cache: the micro-batch carries no example indices');
  return batch.indices;
}
