// Server-Sent Events read with fetch (EventSource cannot send an Authorization header): a parser for the
// text/event-stream format as the HTML standard defines it, fed with decoded text chunks of any size.

export class SseParser {
  /** onEvent receives `{ id, type, data }` for every dispatched event. */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.parts = []; // the pieces of the line being read (a preview image is one multi-megabyte line)
    this.skipLf = false; // the last chunk ended in CR: an LF first in the next one belongs to it
    this.lastEventId = '';
    this.retry = null;
    this.type = '';
    this.data = [];
  }

  push(chunk) {
    let start = 0;
    for (let i = 0; i < chunk.length; i += 1) {
      const c = chunk.charCodeAt(i);
      if (this.skipLf) {
        this.skipLf = false;
        if (c === 10) {
          start = i + 1;
          continue;
        }
      }
      if (c === 10 || c === 13) {
        this.parts.push(chunk.slice(start, i));
        const line = this.parts.length === 1 ? this.parts[0] : this.parts.join('');
        this.parts = [];
        this.line(line);
        this.skipLf = c === 13;
        start = i + 1;
      }
    }
    if (start < chunk.length) this.parts.push(chunk.slice(start));
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    const { type, data } = this;
    this.type = '';
    this.data = [];
    if (data.length === 0) return;
    this.onEvent({ id: this.lastEventId, type: type || 'message', data: data.join('\n') });
  }
}

/** Feeds a response body to the parser until the server ends it; throws when the connection drops. The bytes
 * are decoded here rather than through a TextDecoderStream pipe, whose error on a drop would discard text
 * already received but not yet read. */
export async function pump(response, parser) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      parser.push(decoder.decode());
      return;
    }
    parser.push(decoder.decode(value, { stream: true }));
  }
}
