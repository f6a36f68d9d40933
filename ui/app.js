// app.js: the dashboard's entry point: asks for the API key when the server needs one, opens
// the live stream, and shows one page per location hash: #/leads (list), #/leads/<id> (a lead),
// #/queue.

import { init } from './api.js';
import { toast } from './dom.js';
import { leadView } from './lead.js';
import { leadsView } from './leads.js';
import * as live from './live.js';
import { queueView } from './queue.js';

const main = document.getElementById('main');
let view = null;
let first = true;

function route() {
  const hash = location.hash || '#/leads';
  const [path, query] = hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean);
  view?.destroy?.();
  main.replaceChildren();
  let nav = 'leads';
  if (parts[0] === 'leads' && parts[1]) {
    view = leadView(main, decodeURIComponent(parts[1]));
  } else if (parts[0] === 'queue') {
    view = queueView(main);
    nav = 'queue';
  } else {
    view = leadsView(main, new URLSearchParams(query || ''));
  }
  document.title = `${view.title} · SalesPad`;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // A keyboard or screen-reader user lands at the new page's start, not on the old link.
  if (!first) main.focus();
  first = false;
}

// Nothing fails silently: an error no page caught is shown (and not left to the console).
window.addEventListener('unhandledrejection', (e) => {
  e.preventDefault();
  toast(`Something went wrong: ${e.reason && e.reason.message ? e.reason.message : e.reason}`, 'error');
});

live.onEvent((ev) => view?.onEvent?.(ev));
live.onResync(() => view?.refresh?.());
window.addEventListener('hashchange', route);
await init();
live.start();
route();
