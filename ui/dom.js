// dom.js: a small element builder and the page's shared helpers. Text always goes in as text
// nodes, never as HTML, so nothing from the API can become markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// Replaces el's children, giving focus back to the control that had it (matched by its
// data-focus key), so that a live refresh never throws a keyboard user out of the page.
export function fill(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.dataset.focus : null;
  el.replaceChildren();
  append(el, children);
  if (key) el.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, Number.isNaN(d.getTime()) ? iso : timeFmt.format(d));
}

export function badge(status) {
  return h('span', { class: `badge s-${status}`, dataset: { status } }, status);
}

// Runs fn at most once per `ms`, after the last call (live events come in bursts).
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

// A refresh that never overlaps itself: a call while one runs schedules exactly one more.
export function serial(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await fn();
      } while (again);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  };
  return run;
}

export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  const t = h('p', { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

// A form's error area: one line per message of the API's error body.
export function showErrors(el, err) {
  const msgs = err && err.messages ? err.messages : [String(err && err.message ? err.message : err)];
  fill(el, msgs.map((m) => h('span', {}, m)));
}

// A labelled field: <div class=field><label for=id>text</label>control</div>.
export function field(label, control, extra = {}) {
  return h('div', { class: 'field', ...extra }, h('label', { for: control.id }, label), control);
}
