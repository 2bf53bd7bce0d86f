/**
 * How a run learns to stop: the BullMQ abort signal of its delivery (`cancel`: the API relayed a cancel;
 * `shutdown`: this worker stops) and, since a pub/sub message can be missed, polling its row.
 */
import { isTerminal } from '@edgetune/core';
import type { AbortReason, JobRun } from './context.js';

/** Milliseconds between two reads of the row's status. */
const POLL_MS = 1000;

/**
 * An abort controller for one run that follows `signal` (its reason, else `cancel`).
 * @returns the controller and `release`, which stops following `signal`.
 */
export function followDelivery(signal?: AbortSignal): { controller: AbortController; release: () => void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason ?? 'cancel');
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  return { controller, release: () => signal?.removeEventListener('abort', onAbort) };
}

/** Whether the run was stopped by this worker's shutdown (it then checkpoints and goes back to the queue). */
export function isShutdown(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason === ('shutdown' satisfies AbortReason);
}

/**
 * Aborts `controller` with `cancel` once the row is `cancelling` or finished, and with `superseded` once a
 * newer attempt claimed the job or it went back to the queue (a reconciler re-queued it), read every
 * {@link POLL_MS}.
 * @returns a function that stops polling.
 */
export function pollForCancel(run: JobRun, controller: AbortController): () => void {
  const timer = setInterval(() => {
    run.ctx.db.job.findUnique({ where: { id: run.id }, select: { status: true, attempts: true } }).then(
      (r) => {
        if (!r || controller.signal.aborted) return;
        if (r.attempts !== run.attempt || r.status === 'queued') controller.abort('superseded' satisfies AbortReason);
        else if (r.status === 'cancelling' || isTerminal(r.status)) controller.abort('cancel' satisfies AbortReason);
      },
      () => {},
    );
  }, POLL_MS);
  return () => clearInterval(timer);
}
