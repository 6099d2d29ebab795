// The HTTP API as the playground calls it: a bearer token on every /v1 request, and every failure turned into
// an ApiError carrying the contract's envelope (`{"error": {"code", "message"}}`), so the page can show it.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The error of a non-2xx response, from its JSON envelope when it has one. */
export async function errorFrom(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: described below
  }
  const e = body && body.error;
  if (e && typeof e.message === 'string') {
    return new ApiError(res.status, e.code || `http_${res.status}`, e.message);
  }
  return new ApiError(res.status, `http_${res.status}`,
    `The server answered ${res.status} ${res.statusText} without an error body.`);
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** fetch, with network failures and non-2xx answers thrown as ApiError. */
  async fetch(path, init) {
    let res;
    try {
      res = await fetch(path, { cache: 'no-store', ...init });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `Cannot reach the server (${e.message}); check that it is running.`);
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  async get(path) {
    const res = await this.fetch(path, { headers: this.headers({ Accept: 'application/json' }) });
    return res.json();
  }

  /** POST /v1/uploads: an input image for a later turn; answers its Attachment. */
  async upload(file) {
    const form = new FormData();
    form.append('file', file, file.name);
    const res = await this.fetch('/v1/uploads', { method: 'POST', headers: this.headers(), body: form });
    return res.json();
  }

  /** POST /v1/chat/stream: the open response, whose body is the event stream. */
  chatStream(body, signal) {
    return this.fetch('/v1/chat/stream', {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body),
      signal,
    });
  }

  /** GET /v1/runs/{run_id}/events: the run's events after `lastId`, then live until its terminal event. */
  runEvents(runId, lastId, signal) {
    const extra = { Accept: 'text/event-stream' };
    if (lastId > 0) extra['Last-Event-ID'] = String(lastId);
    return this.fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, { headers: this.headers(extra), signal });
  }
}
