// Following one run to its terminal event, resuming a dropped stream the way EventSource does: reconnect to
// GET /v1/runs/{run_id}/events with Last-Event-ID and skip what was already seen. A server without that route
// (404 not_found) or that no longer keeps the run ends the follow quietly, with a notice.

import { ApiError } from './api.js';
import { SseParser, pump } from './sse.js';

const TERMINAL = new Set(['run.completed', 'error']);
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * open(): a Promise of the first response (throws ApiError for an error envelope).
 * resume(runId, lastId): a Promise of a response that continues after lastId.
 * onEvent(type, data) for each new event; onNotice(text) for connection news.
 * Resolves to 'done' after the terminal event, or 'unresumable' when the stream was lost for good.
 */
export async function followRun({ open, resume, onEvent, onNotice, runId = null, maxAttempts = 8 }) {
  let lastId = 0;
  let terminal = false;
  let retryMs = 1000;
  const handle = (ev) => {
    const id = Number.parseInt(ev.id, 10);
    if (Number.isFinite(id)) {
      if (id <= lastId) return; // already seen before the reconnect
      lastId = id;
    }
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (ev.type === 'run.started' && data.run_id) runId = data.run_id;
    if (TERMINAL.has(ev.type)) terminal = true;
    onEvent(ev.type, data);
  };

  let res = await open();
  let attempt = 0;
  for (;;) {
    const before = lastId;
    const parser = new SseParser(handle);
    try {
      await pump(res, parser);
    } catch {
      // the connection dropped: resume below
    }
    if (parser.retry !== null) retryMs = parser.retry;
    if (terminal) return 'done';
    if (!runId) {
      throw new ApiError(0, 'stream_lost', 'The stream ended before the turn started; send the message again.');
    }
    if (lastId > before) attempt = 0;
    onNotice('Connection lost; resuming…');
    for (;;) {
      attempt += 1;
      if (attempt > maxAttempts) {
        onNotice('The stream could not be resumed; reopen the conversation to see the result.');
        return 'unresumable';
      }
      await sleep(Math.min(retryMs * attempt, 10000));
      try {
        res = await resume(runId, lastId);
        break;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        if (e.status === 404) {
          onNotice(e.code === 'not_found'
            ? 'The connection dropped and this server cannot resume streams; the turn still finishes on the '
              + 'server: reopen the conversation to see it.'
            : `${e.message} Reopen the conversation to see the result.`);
          return 'unresumable';
        }
        const transient = e.status === 0 || e.status === 408 || e.status === 429 || e.status >= 500;
        if (!transient) throw e;
      }
    }
    onNotice('');
  }
}
