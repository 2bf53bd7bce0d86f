/** One Redis subscriber per API process that wakes SSE streams when their job has new events. */
import type { Redis } from 'ioredis';
import { channels } from '@edgetune/core';

/** Fan-out of "job X has new events" nudges to in-process listeners. */
export class EventHub {
  private readonly listeners = new Map<string, Set<() => void>>();
  private sub: Redis | null = null;
  private ready: Promise<void> | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /**
   * Subscribes (lazily, once).
   * @throws Error at once when Redis is unreachable on a fail-fast connection (streams poll meanwhile, and the
   *   next one tries again); a subscription Redis does not confirm fails after the connection's command timeout.
   */
  start(): Promise<void> {
    if (!this.ready) {
      if (this.redis.options.enableOfflineQueue === false && this.redis.status !== 'ready')
        return Promise.reject(new Error(`Redis is unreachable (connection ${this.redis.status})`));
      // offline queue on: its first SUBSCRIBE waits for this new connection's own connect
      this.sub = this.redis.duplicate({ enableOfflineQueue: true });
      this.sub.on('message', (_ch: string, jobId: string) => {
        for (const fn of this.listeners.get(jobId) ?? []) fn();
      });
      this.sub.on('error', () => {});
      this.ready = this.sub.subscribe(channels(this.prefix).events).then(
        () => undefined,
        (e: unknown) => {
          this.sub?.disconnect();
          this.sub = null;
          this.ready = null; // retried by the next stream
          throw e;
        },
      );
    }
    return this.ready;
  }

  /** Calls `fn` on every nudge for `jobId`; returns the unsubscribe function. */
  listen(jobId: string, fn: () => void): () => void {
    const set = this.listeners.get(jobId) ?? new Set();
    set.add(fn);
    this.listeners.set(jobId, set);
    return () => {
      set.delete(fn);
      if (!set.size) this.listeners.delete(jobId);
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.sub) {
      this.sub.disconnect();
      this.sub = null;
    }
  }
}
