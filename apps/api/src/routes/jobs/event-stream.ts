/**
 * An SSE stream that follows one job: it sends the job's events from a position on, woken by the event hub
 * (and a poll, in case a nudge is lost), and ends with an `end` event once the job is finished.
 */
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { SSEReplyInterface } from '@fastify/sse';
import { isTerminal } from '@edgetune/core';
import type { AppDeps } from '../../plugins/deps.js';
import { eventsAfter, isTerminalStatusEvent, jobStatus } from '../../services/job-events.js';
import { eventObject } from '../../serialize.js';

/** Keep-alive comment interval of event streams, ms. */
export const PING_MS = 15_000;
/** Reconnection delay the client is told (the `retry` field), ms. */
const RETRY_MS = 2000;
/** Poll interval, ms: a stream reads new events at least this often without a nudge. */
const POLL_MS = 2000;
/** Events read per query. */
const BATCH = 500;
/**
 * The worker sets a terminal status before it writes its last events, so a finished job's stream ends after
 * the terminal `status` event, or this long (ms) after it first saw the finished status without one.
 */
const TERMINAL_GRACE_MS = 5000;

/** Follows one job for one client. */
class JobEventStream {
  private closed = false;
  /** a pump is running; `again`: something happened meanwhile, pump once more */
  private busy = false;
  private again = false;
  private sentTerminalEvent = false;
  /** when the stream first saw the job finished without its terminal event, ms since the epoch (0: not yet) */
  private terminalSince = 0;
  private poll: NodeJS.Timeout | undefined;
  private unlisten = () => {};

  constructor(
    private readonly deps: Pick<AppDeps, 'db' | 'hub' | 'streams'>,
    private readonly sse: SSEReplyInterface,
    private readonly jobId: string,
    /** position of the last event sent */
    private seq: bigint,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Starts the stream and sends what the job has so far; the stream then lives until {@link finish}. */
  async start(): Promise<void> {
    if (!this.sse.isConnected) return; // the client left while the job was looked up
    this.sse.keepAlive();
    this.sse.onClose(this.finish);
    this.deps.streams.add(this.finish);
    this.unlisten = this.deps.hub.listen(this.jobId, this.wake);
    this.poll = setInterval(this.wake, POLL_MS);
    await this.sse.send({ data: undefined, retry: RETRY_MS }); // a frame with the `retry` field alone
    await this.pump();
  }

  /** Ends the stream once: stops its timer and listeners and closes the response. */
  private readonly finish = (): void => {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.poll);
    this.unlisten();
    this.deps.streams.delete(this.finish);
    this.sse.close();
  };

  private readonly wake = (): void => void this.pump();

  /** Runs {@link step}s, one at a time: a wake-up during one runs one more after it. */
  private async pump(): Promise<void> {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        if (await this.step()) return this.finish();
      } while (this.again && !this.closed);
    } catch (err) {
      this.log.warn({ err }, 'event stream failed');
      this.finish();
    } finally {
      this.busy = false;
    }
  }

  /** Sends the new events; true once the stream is complete (it sent the `end` event). */
  private async step(): Promise<boolean> {
    const status = await jobStatus(this.deps.db, this.jobId);
    await this.sendNewEvents();
    if (this.closed || !this.complete(status)) return false;
    await this.sse.send({ event: 'end', data: { status: status ?? null } });
    return true;
  }

  /** Sends every event after {@link seq}, in batches. */
  private async sendNewEvents(): Promise<void> {
    for (;;) {
      const rows = await eventsAfter(this.deps.db, this.jobId, this.seq, BATCH);
      for (const e of rows) {
        if (this.closed) return;
        await this.sse.send({ id: e.id, event: e.type, data: eventObject(e) });
        this.seq = e.seq;
        if (isTerminalStatusEvent(e)) this.sentTerminalEvent = true;
      }
      if (rows.length < BATCH) return;
    }
  }

  /** Whether the stream has all the events of a job whose status was `status` before they were read (none: the job is gone). */
  private complete(status: string | undefined): boolean {
    if (!status) return true;
    if (!isTerminal(status)) return false;
    if (this.sentTerminalEvent) return true;
    this.terminalSince ||= Date.now();
    return Date.now() - this.terminalSince >= TERMINAL_GRACE_MS;
  }
}

/**
 * Streams job `jobId`'s events after position `seq` (exclusive) as text/event-stream on `reply` (a route
 * with `sse` set): `id` the event id, `event` its type, `data` the event object; then `end` with `{status}`.
 * Resolves once the events so far are sent; the stream ends when the job is finished, the client goes
 * away or the app closes.
 */
export async function followJobEvents(
  deps: Pick<AppDeps, 'db' | 'hub' | 'streams'>,
  reply: FastifyReply,
  jobId: string,
  seq: bigint,
): Promise<void> {
  // headers set on the reply override @fastify/sse's (which lack the charset and no-transform)
  reply.header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache, no-transform');
  await new JobEventStream(deps, reply.sse, jobId, seq, reply.log).start();
}
