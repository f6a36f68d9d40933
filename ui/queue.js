// queue.js: the Queue page: how many jobs are in each state, and the dead letters (failed
// jobs: every attempt used, or an error that is not worth retrying) with their errors and a
// retry button. Counts come from GET /metrics (salespad_jobs), or, on a server without it,
// from GET /jobs one state at a time (shown as "100+" beyond a page).

import { api } from './api.js';
import { debounce, fill, h, serial } from './dom.js';
import { jobsTable } from './jobs.js';

const STATES = ['waiting', 'active', 'delayed', 'completed', 'failed'];
const PAGE = 25;
const REFRESH_MS = 5000;

async function countsFromMetrics() {
  const text = await api('GET', '/metrics', undefined, 'text/plain');
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  let seen = false;
  for (const line of String(text).split('\n')) {
    const m = /^salespad_jobs\{([^}]*)\}\s+(\d+)/.exec(line);
    const st = m && /(?:^|,)state="([a-z]+)"/.exec(m[1]);
    if (st && st[1] in counts) {
      counts[st[1]] += Number(m[2]);
      seen = true;
    }
  }
  if (!seen) throw new Error('no salespad_jobs in /metrics');
  return { counts, capped: {} };
}

async function countsFromJobs() {
  const counts = {};
  const capped = {};
  await Promise.all(STATES.map(async (s) => {
    const page = await api('GET', `/jobs?state=${s}&limit=100`);
    counts[s] = page.items.length;
    capped[s] = Boolean(page.nextCursor);
  }));
  return { counts, capped };
}

export function queueView(main) {
  let source = null; // 'metrics' or 'jobs', once one answered
  let cursor = null;
  let missing = false;
  const counts = h('dl', { class: 'counts', id: 'queue-counts' });
  const dead = h('div', { id: 'dead-letters' });
  const note = h('p', { class: 'note', role: 'status' });
  const more = h('button', { type: 'button', class: 'more', hidden: true, onclick: () => loadMore() },
    'Load more');

  main.append(
    h('h1', {}, 'Queue'), note,
    h('section', { class: 'card', 'aria-labelledby': 'counts-title' },
      h('h2', { id: 'counts-title' }, 'Jobs by state'), counts),
    h('section', { class: 'card', 'aria-labelledby': 'dead-title' },
      h('h2', { id: 'dead-title' }, 'Dead letters'),
      h('p', { class: 'hint' }, 'Jobs that failed for good. Retry puts one back in line once the cause is fixed.'),
      dead, more));

  async function loadCounts() {
    let r = null;
    if (source !== 'jobs') {
      try {
        r = await countsFromMetrics();
        source = 'metrics';
      } catch {
        r = null;
      }
    }
    if (!r) {
      r = await countsFromJobs();
      source = 'jobs';
    }
    fill(counts, STATES.map((s) => h('div', { class: `count${r.counts[s] ? ` s-${s}` : ''}`, dataset: { state: s } },
      h('dt', {}, s), h('dd', {}, `${r.counts[s]}${r.capped[s] ? '+' : ''}`))));
  }

  let rows = [];
  async function loadDead(reset) {
    const p = new URLSearchParams({ state: 'failed', limit: String(PAGE) });
    if (!reset && cursor) p.set('cursor', cursor);
    const page = await api('GET', `/jobs?${p}`);
    rows = reset ? page.items : rows.concat(page.items);
    cursor = page.nextCursor;
    more.hidden = !cursor;
    fill(dead, rows.length ? jobsTable(rows, { withLead: true, onRetried: refresh })
      : h('p', { class: 'note', id: 'no-dead' }, 'No dead letters.'));
  }

  const refresh = serial(async () => {
    if (missing) return;
    try {
      await Promise.all([loadCounts(), loadDead(true)]);
      note.textContent = '';
    } catch (e) {
      if (e.isMissingRoute) {
        missing = true;
        note.textContent = 'This server has no job routes (GET /jobs): the queue cannot be shown.';
      } else {
        note.textContent = `Could not load the queue: ${e.message}`;
      }
    }
  });
  const refreshSoon = debounce(refresh, 150);

  async function loadMore() {
    more.disabled = true;
    try {
      await loadDead(false);
    } catch (e) {
      note.textContent = `Could not load more: ${e.message}`;
    } finally {
      more.disabled = false;
    }
  }

  // Active and delayed jobs change without an event of their own: counts are re-read too.
  const timer = setInterval(refresh, REFRESH_MS);
  refresh();
  return {
    title: 'Queue',
    onEvent: refreshSoon,
    refresh,
    destroy() {
      clearInterval(timer);
    },
  };
}
