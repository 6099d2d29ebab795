// The playground: a bearer token (kept in localStorage; prefilled with the dev token only when the server runs
// on its zero-config dev secret), the agents, past conversations with paging, and a chat whose replies stream
// in over POST /v1/chat/stream, with uploads for edits and every error envelope shown.

import { Api, ApiError } from './api.js';
import { followRun } from './stream.js';
import { Bubble } from './view.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'agentd.token';
const DEV_KEY = 'agentd.playground-key';
const state = { devToken: null, conversationId: null, cursor: null, upload: null, busy: false };
let api = new Api('');

function showError(e) {
  const box = $('error');
  if (!e) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  const code = e.code ? ` (${e.code}${e.status ? `, HTTP ${e.status}` : ''})` : '';
  box.textContent = `${e.message}${code}`;
  box.hidden = false;
}

function setBusy(busy) {
  state.busy = busy;
  $('send').disabled = busy;
  $('send').textContent = busy ? 'Working…' : 'Send';
}

async function loadAgents() {
  const { data } = await api.get('/v1/agents');
  const select = $('agent');
  const previous = select.value || localStorage.getItem('agentd.agent');
  select.replaceChildren(...data.map((a) => {
    const o = document.createElement('option');
    o.value = a.key;
    o.textContent = `${a.display_name} (${a.key})`;
    o.title = a.description;
    return o;
  }));
  if (data.some((a) => a.key === previous)) select.value = previous;
  const describe = () => {
    const a = data.find((x) => x.key === select.value);
    $('agent-info').textContent = a ? `${a.description} Model ${a.model}${a.tool_keys.length ? `; tools: ${a.tool_keys.join(', ')}` : ''}.` : '';
  };
  select.onchange = () => {
    localStorage.setItem('agentd.agent', select.value);
    describe();
  };
  describe();
}

function markCurrent() {
  for (const b of $('conversations').querySelectorAll('button')) {
    b.setAttribute('aria-current', String(b.dataset.id === state.conversationId));
  }
}

async function loadConversations(reset) {
  const cursor = reset ? '' : `&cursor=${encodeURIComponent(state.cursor)}`;
  const page = await api.get(`/v1/conversations?limit=20${cursor}`);
  const list = $('conversations');
  if (reset) list.replaceChildren();
  for (const c of page.data) {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.id = c.id;
    const when = document.createElement('span');
    when.className = 'when';
    when.textContent = `${c.agent} · ${new Date(c.updated_at).toLocaleString()}`;
    b.append(c.title || 'Untitled', when);
    b.addEventListener('click', () => openConversation(c.id).catch(showError));
    const li = document.createElement('li');
    li.append(b);
    list.append(li);
  }
  state.cursor = page.next_cursor;
  $('more').hidden = !state.cursor;
  markCurrent();
}

function startNew() {
  state.conversationId = null;
  $('log').replaceChildren();
  $('chat-title').textContent = 'New conversation';
  $('agent').disabled = false;
  markCurrent();
  $('message').focus();
}

async function openConversation(id) {
  showError(null);
  const conv = await api.get(`/v1/conversations/${encodeURIComponent(id)}`);
  state.conversationId = conv.id;
  $('chat-title').textContent = conv.title || 'Untitled';
  $('agent').value = conv.agent;
  $('agent').disabled = true;
  const log = $('log');
  log.replaceChildren();
  for (const m of conv.messages) new Bubble(log, m.role).fill(m);
  markCurrent();
  // A turn still running (or one whose stream dropped) is followed through the resumable route.
  if (conv.active_run && !state.busy) {
    await follow(new Bubble(log, 'assistant'), {
      open: () => api.runEvents(conv.active_run.run_id, 0),
      runId: conv.active_run.run_id,
    });
  }
}

/** Follows a run into `bubble`; errors end up on the bubble and the banner. */
async function follow(bubble, { open, runId = null }) {
  bubble.li.classList.add('streaming');
  setBusy(true);
  try {
    const outcome = await followRun({
      open,
      runId,
      resume: (id, lastId) => api.runEvents(id, lastId),
      onNotice: (text) => bubble.notice(text),
      onEvent: (type, data) => {
        if (type === 'run.started') state.conversationId = data.conversation_id;
        const failure = bubble.apply(type, data);
        if (failure) showError(new ApiError(0, failure.code, failure.message));
      },
    });
    if (outcome !== 'done') bubble.li.classList.remove('streaming');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code === 'not_found' && runId) {
      bubble.notice('A turn is running; this server cannot follow it live. Reopen the conversation later.');
    } else {
      bubble.fail(e.message);
      showError(e);
    }
    bubble.li.classList.remove('streaming');
  } finally {
    setBusy(false);
  }
  $('agent').disabled = Boolean(state.conversationId);
  await loadConversations(true).catch(showError);
}

async function send(event) {
  event.preventDefault();
  const text = $('message').value.trim();
  if (!text || state.busy) return;
  showError(null);
  const body = { message: text };
  if (state.conversationId) body.conversation_id = state.conversationId;
  else body.agent = $('agent').value;
  const log = $('log');
  const mine = new Bubble(log, 'user');
  mine.text.textContent = text;
  if (state.upload) {
    body.attachments = [{ object_id: state.upload.object_id }];
    mine.thumbnail(state.upload.thumb, state.upload.filename);
  }
  $('message').value = '';
  clearUpload();
  if (!state.conversationId) $('chat-title').textContent = text.slice(0, 80);
  await follow(new Bubble(log, 'assistant'), { open: () => api.chatStream(body) });
}

function clearUpload() {
  state.upload = null;
  $('pending').replaceChildren();
}

async function upload() {
  const file = $('file').files[0];
  if (!file) return;
  showError(null);
  $('pending').textContent = `Uploading ${file.name}…`;
  try {
    const a = await api.upload(file);
    state.upload = { ...a, thumb: URL.createObjectURL(file) };
    const img = document.createElement('img');
    img.src = state.upload.thumb;
    img.alt = `Attached ${file.name}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'link';
    remove.textContent = 'remove';
    remove.setAttribute('aria-label', `Remove the attached ${file.name}`);
    remove.addEventListener('click', clearUpload);
    $('pending').replaceChildren(img, `${file.name} attached`, remove);
  } catch (e) {
    clearUpload();
    showError(e);
  } finally {
    $('file').value = '';
  }
}

async function connect() {
  showError(null);
  api = new Api($('token').value.trim() || state.devToken || '');
  try {
    await loadAgents();
    await loadConversations(true);
  } catch (e) {
    showError(e);
  }
}

// The key of the link the server printed (`/#key=…`): kept for this tab, taken out of the address bar.
function devKey() {
  const m = /(?:^#|&)key=([0-9a-f]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(DEV_KEY, m[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(DEV_KEY);
}

async function init() {
  try {
    const key = devKey();
    const headers = key ? { 'x-playground-key': key } : {};
    const res = await fetch('/playground/config.json', { cache: 'no-store', headers });
    if (res.ok) state.devToken = (await res.json()).dev_token || null;
  } catch {
    // an older server without the endpoint: no prefill
  }
  $('token').value = localStorage.getItem(TOKEN_KEY) || state.devToken || '';
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
    connect();
  });
  $('composer').addEventListener('submit', (e) => { send(e).catch(showError); });
  $('message').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('file').addEventListener('change', () => { upload(); });
  $('new').addEventListener('click', startNew);
  $('more').addEventListener('click', () => loadConversations(false).catch(showError));
  await connect();
  document.body.dataset.ready = 'true';
}

init();
