/** A deadline on a promise, for calls that can wait forever on a store that is down. */

/**
 * `p`, or a rejection after `ms` milliseconds (the timer does not keep the process alive).
 * @throws Error `timeout` once `ms` have passed; `p`'s own rejection before that
 */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error('timeout')), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
