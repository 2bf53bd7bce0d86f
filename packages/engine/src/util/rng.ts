/**
 * Seeded pseudo-random numbers (mulberry32 over a 32-bit state; seeds hashed with a 32-bit FNV-1a so
 * strings and numbers both work). Deterministic across runs and platforms: used for LoRA init, data
 * shuffling, window choice and dropout seeds.
 */
export class Rng {
  private s: number;
  constructor(seed: number | string) {
    let h = 0x811c9dc5;
    for (const ch of String(seed)) {
      h ^= ch.charCodeAt(0);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    this.s = h >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Fisher-Yates shuffle in place. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
  /** Snapshot of the state (for checkpoints). */
  state(): number {
    return this.s;
  }
  /** Restores a snapshot from {@link state}. */
  restore(s: number): void {
    this.s = s >>> 0;
  }
}
