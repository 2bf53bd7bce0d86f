/**
 * A text/event-stream reader: the event stream interpretation of the WHATWG HTML standard
 * (§9.2.6 "Interpreting an event stream"): `field: value` lines, `:` comments, a blank line dispatches.
 */

/** One dispatched message. `data` is undefined for a frame without data lines (e.g. `retry` alone). */
export interface SseMessage {
  id?: string;
  /** the `event` field, `message` when absent */
  event: string;
  data?: string;
  /** reconnection time the server asks for, ms */
  retry?: number;
}

/** Yields the messages of an event stream body until it ends. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage, void, undefined> {
  const decoder = new TextDecoder();
  let buf = '';
  let m: SseMessage = { event: 'message' };
  let fields = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      // a lone \r at the end of the buffer may be the first half of \r\n: wait for more
      if (buf[nl] === '\r' && nl === buf.length - 1) break;
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (fields) yield m;
        m = { event: 'message' };
        fields = 0;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      fields++;
      if (field === 'data') m.data = m.data === undefined ? value : `${m.data}\n${value}`;
      else if (field === 'event') m.event = value;
      else if (field === 'id' && !value.includes('\0')) m.id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) m.retry = Number(value);
      else fields--;
    }
  }
}
