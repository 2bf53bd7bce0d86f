/**
 * Micro-batching of encoded examples: a seeded shuffle per epoch, grouped by length so padding stays
 * small (HF `group_by_length`), right padding. Deterministic from (seed, epoch), so a resumed run sees
 * the same batches.
 */
import { Rng } from '../util/rng.js';
import { IGNORE_INDEX } from '@edgetune/core';

/** One tokenised example; labels[t] is the target of position t (IGNORE_INDEX = no loss), HF convention. */
export interface Example {
  inputIds: number[];
  labels: number[];
}

/** A right-padded micro-batch. */
export interface Batch {
  /** [batch][seq] token ids, padded with padId */
  ids: number[][];
  /** [batch][seq] labels, IGNORE_INDEX on padding */
  labels: number[][];
  /** [batch][seq] 1 for real tokens */
  mask: number[][];
  /** real (non-pad) tokens in the batch */
  tokens: number;
  /** index of each row's example in the training set (for per-example caches) */
  indices?: number[];
}

/** Pads examples to their longest length. */
export function makeBatch(examples: Example[], padId: number): Batch {
  const T = Math.max(...examples.map((e) => e.inputIds.length));
  let tokens = 0;
  const ids: number[][] = [],
    labels: number[][] = [],
    mask: number[][] = [];
  for (const e of examples) {
    const n = e.inputIds.length;
    tokens += n;
    ids.push([...e.inputIds, ...new Array(T - n).fill(padId)]);
    labels.push([...e.labels, ...new Array(T - n).fill(IGNORE_INDEX)]);
    mask.push([...new Array(n).fill(1), ...new Array(T - n).fill(0)]);
  }
  return { ids, labels, mask, tokens };
}

/** Position of the iterator, saved in checkpoints. */
export interface BatchCursor {
  epoch: number;
  index: number;
}

/** Endless epoch-wise micro-batch iterator. */
export class BatchIterator {
  private order: number[][] = [];
  cursor: BatchCursor;

  constructor(
    private readonly examples: Example[],
    private readonly microBatch: number,
    private readonly padId: number,
    private readonly seed: string | number,
    cursor: BatchCursor = { epoch: 0, index: 0 },
  ) {
    if (!examples.length) throw new Error('no training examples');
    this.cursor = { ...cursor };
    this.order = this.plan(this.cursor.epoch);
  }

  /** Micro-batches per epoch. */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / this.microBatch);
  }

  private plan(epoch: number): number[][] {
    const rng = new Rng(`${this.seed}:epoch:${epoch}`);
    const idx = rng.shuffle(this.examples.map((_, i) => i));
    const chunk = this.microBatch * 32;
    const batches: number[][] = [];
    for (let c = 0; c < idx.length; c += chunk) {
      const part = idx.slice(c, c + chunk).sort((a, b) => this.examples[a].inputIds.length - this.examples[b].inputIds.length);
      for (let i = 0; i < part.length; i += this.microBatch) batches.push(part.slice(i, i + this.microBatch));
    }
    return rng.shuffle(batches);
  }

  /** Moves to a saved position (checkpoint resume). */
  seek(cursor: BatchCursor): void {
    this.cursor = { ...cursor };
    this.order = this.plan(cursor.epoch);
  }

  /** Next micro-batch (starts a new epoch when one ends). */
  next(): Batch {
    if (this.cursor.index >= this.order.length) {
      this.cursor = { epoch: this.cursor.epoch + 1, index: 0 };
      this.order = this.plan(this.cursor.epoch);
    }
    const b = this.order[this.cursor.index++];
    return {
      ...makeBatch(
        b.map((i) => this.examples[i]),
        this.padId,
      ),
      indices: b,
    };
  }
}
