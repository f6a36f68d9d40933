// leads.js: the Leads page: a capture form, search (q: a prefix of the name, email or phone)
// and a status filter over GET /leads, page by page with its cursor, and new leads coming in
// at the top as they are captured (lead_added events).

import { api } from './api.js';
import { badge, debounce, field, h, showErrors, time, toast } from './dom.js';

const STATUSES = ['new', 'contacted', 'replied', 'converted', 'dead'];
const PAGE = 25;

export function leadsView(main, params) {
  let q = params.get('q') || '';
  let status = params.get('status') || '';
  let cursor = null;
  let generation = 0;
  let missing = false;
  const shown = new Map(); // lead id -> its <li>

  const list = h('ol', { class: 'leads', id: 'lead-list', 'aria-label': 'Leads' });
  const note = h('p', { class: 'note', id: 'lead-note', role: 'status' });
  const more = h('button', { type: 'button', class: 'more', hidden: true, onclick: () => load(false) },
    'Load more');

  const search = h('input', { id: 'lead-q', type: 'search', name: 'q', value: q, autocomplete: 'off',
    placeholder: 'Name, email or phone', spellcheck: 'false' });
  const statusSel = h('select', { id: 'lead-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const apply = () => {
    q = search.value.trim();
    status = statusSel.value;
    const p = new URLSearchParams();
    if (q) p.set('q', q);
    if (status) p.set('status', status);
    const hash = `#/leads${p.size ? `?${p}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    load(true);
  };
  search.addEventListener('input', debounce(apply, 250));
  statusSel.addEventListener('change', apply);
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Find leads',
    onsubmit: (e) => { e.preventDefault(); apply(); } },
    field('Search', search), field('Status', statusSel));

  main.append(
    h('h1', {}, 'Leads'),
    captureForm((lead) => add(lead, true)),
    h('section', { 'aria-labelledby': 'list-title' },
      h('h2', { id: 'list-title' }, 'All leads'), filters, note, list, more),
  );

  function matches(l) {
    if (status && l.status !== status) return false;
    if (!q) return true;
    const needle = q.toLowerCase();
    const digits = needle.replace(/\D/g, '');
    return [l.name, l.email].some((v) => v && v.toLowerCase().startsWith(needle)) ||
      (digits.length > 0 && /^[+\d\s().-]+$/.test(needle) &&
        (l.phone || '').replace(/\D/g, '').startsWith(digits));
  }

  function row(l) {
    const contact = [l.email, l.phone].filter(Boolean).join(' · ');
    return h('li', { dataset: { leadId: l.id } },
      h('a', { href: `#/leads/${encodeURIComponent(l.id)}`, class: 'lead-link' },
        h('span', { class: 'name' }, l.name)),
      h('span', { class: 'contact' }, contact),
      badge(l.status),
      h('span', { class: 'when' }, time(l.createdAt)));
  }

  // A lead captured now (its lead_added event, this tab's own capture, or found by a
  // refresh: `listed`, already filtered by the server): at the top.
  function add(l, isOwn, listed = false) {
    if (shown.has(l.id) || (!listed && !matches(l))) return;
    const li = row(l);
    li.classList.add('fresh');
    shown.set(l.id, li);
    list.prepend(li);
    if (missing || isOwn) note.textContent = '';
  }

  async function load(reset) {
    const mine = reset ? ++generation : generation;
    const p = new URLSearchParams({ limit: String(PAGE) });
    if (q) p.set('q', q);
    if (status) p.set('status', status);
    if (!reset && cursor) p.set('cursor', cursor);
    more.disabled = true;
    try {
      const page = await api('GET', `/leads?${p}`);
      if (mine !== generation) return; // the filters changed meanwhile
      if (reset) {
        list.replaceChildren();
        shown.clear();
      }
      for (const l of page.items) {
        if (shown.has(l.id)) continue;
        const li = row(l);
        shown.set(l.id, li);
        list.append(li);
      }
      cursor = page.nextCursor;
      more.hidden = !cursor;
      note.textContent = shown.size ? '' : (q || status ? 'No lead matches.' : 'No leads yet.');
    } catch (e) {
      if (mine !== generation) return;
      if (e.isMissingRoute) {
        missing = true;
        more.hidden = true;
        note.textContent = 'This server cannot list leads (it has no GET /leads): leads captured ' +
          'while this page is open appear below.';
      } else {
        note.textContent = `Could not load the leads: ${e.message}`;
      }
    } finally {
      more.disabled = false;
    }
  }

  load(true);
  return {
    title: 'Leads',
    onEvent(ev) {
      if (ev.type === 'lead_added') {
        add({ ...ev.payload, id: ev.leadId, createdAt: ev.createdAt }, false);
      } else if (ev.type === 'status_changed' && shown.has(ev.leadId)) {
        shown.get(ev.leadId).querySelector('.badge').replaceWith(badge(ev.payload.to));
      }
    },
    // Events may have been missed: the first page again, merged into what is shown (new leads
    // at the top, statuses updated), so that the pages loaded below stay where they are.
    async refresh() {
      if (missing) return;
      const mine = generation;
      const p = new URLSearchParams({ limit: String(PAGE) });
      if (q) p.set('q', q);
      if (status) p.set('status', status);
      try {
        const page = await api('GET', `/leads?${p}`);
        if (mine !== generation) return;
        for (const l of [...page.items].reverse()) {
          if (shown.has(l.id)) shown.get(l.id).querySelector('.badge').replaceWith(badge(l.status));
          else add(l, false, true);
        }
      } catch {
        // the next refresh or event tries again
      }
    },
  };
}

function captureForm(onCaptured) {
  const name = h('input', { id: 'new-name', name: 'name', required: true, maxlength: 255,
    autocomplete: 'off' });
  const email = h('input', { id: 'new-email', name: 'email', type: 'email', autocomplete: 'off' });
  const phone = h('input', { id: 'new-phone', name: 'phone', type: 'tel', autocomplete: 'off' });
  const errors = h('p', { class: 'error', id: 'new-errors', role: 'alert' });
  const submit = h('button', { type: 'submit' }, 'Add lead');
  const form = h('form', { class: 'capture', 'aria-labelledby': 'capture-title', novalidate: true },
    h('h2', { id: 'capture-title' }, 'New lead'),
    h('div', { class: 'row' }, field('Name', name), field('Email', email), field('Phone', phone)),
    errors, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errors.textContent = '';
    const body = { name: name.value };
    if (email.value.trim()) body.email = email.value.trim();
    if (phone.value.trim()) body.phone = phone.value.trim();
    submit.disabled = true;
    try {
      const lead = await api('POST', '/leads', body);
      form.reset();
      name.focus();
      toast(`Lead added: ${lead.name}`);
      onCaptured(lead);
    } catch (err) {
      showErrors(errors, err);
      // A person already captured (409 names the lead): offer the way to it.
      const existing = err.status === 409 && err.body && err.body.leadId;
      if (existing) {
        errors.append(h('a', { href: `#/leads/${encodeURIComponent(existing)}` }, 'Open that lead'));
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
