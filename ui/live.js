// live.js: the page's live updates. One EventSource on GET /events (the timeline of every lead
// as server-sent events; the browser resumes with Last-Event-ID after a drop). EventSource
// cannot send headers, so the API key goes in the `key` query parameter. When the stream
// cannot be had (a server without the route, a refused key), the page polls instead: every
// view refreshes itself every POLL_MS, and the stream is tried again now and then.

import { api, ApiError, apiKey, onKeyChange } from './api.js';

const TYPES = [
  'lead_added', 'message_queued', 'message_sent', 'message_failed', 'reply_received',
  'ai_reply_sent', 'status_changed', 'address_added', 'ai_reply_failed', 'ai_reply_skipped',
  'message_delivered', 'message_read', 'opted_out', 'opted_in', 'message_suppressed',
  'message_retried',
];
const POLL_MS = 3000;
const RETRY_MS = 15000;

const eventFns = new Set();
const resyncFns = new Set();
let es = null;
let pollTimer = null;
let retryTimer = null;

export function onEvent(fn) {
  eventFns.add(fn);
}

// Called when events may have been missed (polling, or a new stream after a lost one): views
// reload what they show.
export function onResync(fn) {
  resyncFns.add(fn);
}

function setState(state, text) {
  const el = document.getElementById('live');
  el.dataset.state = state;
  el.textContent = text;
}

function dispatch(m) {
  let ev;
  try {
    ev = JSON.parse(m.data);
  } catch {
    return;
  }
  for (const fn of eventFns) fn(ev);
}

function resync() {
  for (const fn of resyncFns) fn();
}

function polling(text) {
  setState('polling', text);
  if (!pollTimer) pollTimer = setInterval(resync, POLL_MS);
}

export function start() {
  clearTimeout(retryTimer);
  if (es) es.close();
  const key = apiKey();
  es = new EventSource(key ? `/events?key=${encodeURIComponent(key)}` : '/events');
  for (const t of TYPES) es.addEventListener(t, dispatch);
  es.addEventListener('message', dispatch); // an event type this page does not know yet
  // Once the stream is open, the view reloads: what committed between its first load and the
  // stream's start (or while no stream ran) is then shown too; events it already has are
  // merged, not repeated.
  es.onopen = () => {
    setState('live', 'Live');
    resync();
    clearInterval(pollTimer);
    pollTimer = null;
  };
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) {
      setState('reconnecting', 'Reconnecting…');
      return;
    }
    probe();
  };
}

// The stream was refused: find out why, without another EventSource error in the console.
async function probe() {
  try {
    await api('HEAD', '/events');
    polling('Polling');
    retryTimer = setTimeout(start, RETRY_MS);
  } catch (e) {
    // A HEAD answer has no body to tell a missing route from anything else: on this path
    // (no id in it) a 404 or a 405 can only mean the server has no stream.
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
      polling('Polling (no live stream on this server)');
    } else {
      polling('Polling');
      retryTimer = setTimeout(start, RETRY_MS);
    }
  }
}

onKeyChange(() => start());
