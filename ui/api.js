// api.js: every call the page makes to SalesPad's HTTP API. When API_KEYS is set (the server's
// /ui/config.json says so) the page asks for a key once, keeps it for the tab (sessionStorage)
// and sends it as X-API-Key; a key the server refuses (401) is forgotten and asked for again.

const KEY = 'salespad.apiKey';
let keyRequired = false;
let asking = null;
const keyListeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    const msg = body && typeof body === 'object' ? body.message : body;
    const messages = Array.isArray(msg) ? msg.map(String) : [String(msg || `HTTP ${status}`)];
    super(messages.join('; '));
    this.status = status;
    this.messages = messages;
    this.body = body;
  }

  // The server has no such route (an older build): 405 on a known path, or the router's
  // "Cannot GET /path" 404 (a missing resource's 404 says something else).
  get isMissingRoute() {
    return this.status === 405 || (this.status === 404 && /^Cannot [A-Z]+ \//.test(this.message));
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function onKeyChange(fn) {
  keyListeners.add(fn);
}

export async function init() {
  const r = await fetch('/ui/config.json', { cache: 'no-store' });
  const c = r.ok ? await r.json() : {};
  keyRequired = c.apiKey === 'required';
  if (keyRequired && !apiKey()) await askKey('');
}

function askKey(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dlg = document.getElementById('key-dialog');
    const form = document.getElementById('key-form');
    const input = document.getElementById('key-input');
    document.getElementById('key-error').textContent = message;
    input.value = '';
    // Without a key nothing works: Escape does not dismiss the dialog.
    dlg.oncancel = (e) => e.preventDefault();
    form.onsubmit = (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!v) return;
      sessionStorage.setItem(KEY, v);
      dlg.close();
      asking = null;
      for (const fn of keyListeners) fn();
      resolve();
    };
    dlg.showModal();
    input.focus();
  });
  return asking;
}

// One API call: resolves with the parsed JSON (or text) of a 2xx answer, throws ApiError.
export async function api(method, path, body, accept = 'application/json') {
  for (;;) {
    const headers = { Accept: accept };
    const key = apiKey();
    if (key) headers['X-API-Key'] = key;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 401) {
      sessionStorage.removeItem(KEY);
      await askKey(key ? 'That key was refused: check it and try again.' : '');
      continue;
    }
    const text = await r.text();
    let data = text;
    if ((r.headers.get('Content-Type') || '').startsWith('application/json')) {
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = text;
      }
    }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }
}

// The key for URLs that cannot carry headers (EventSource): null when none is needed.
export function keyRequiredNow() {
  return keyRequired;
}
