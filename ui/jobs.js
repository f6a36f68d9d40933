// jobs.js: the job table of the lead page and of the queue page, and the retry action
// (POST /jobs/:id/retry: a failed job, a dead letter, back in line).

import { api } from './api.js';
import { badge, h, time, toast } from './dom.js';

export async function retryJob(id, button) {
  button.disabled = true;
  try {
    const j = await api('POST', `/jobs/${encodeURIComponent(id)}/retry`);
    toast(`Job ${j.id} is back in the queue (${j.state}).`);
    return true;
  } catch (e) {
    toast(e.isMissingRoute ? 'This server cannot retry jobs (it has no POST /jobs/:id/retry).'
      : `Retry refused: ${e.message}`, 'error');
    button.disabled = false;
    return false;
  }
}

// `jobs`: records as GET /jobs or GET /leads/:id render them. withLead adds a link to the lead;
// what(j): the message a job is for, when the caller knows it.
export function jobsTable(jobs, { withLead = false, caption, onRetried, what } = {}) {
  if (!jobs.length) return h('p', { class: 'note' }, 'No jobs.');
  const rows = jobs.map((j) => {
    const retry = j.state === 'failed'
      ? h('button', { type: 'button', class: 'small', dataset: { focus: `retry-${j.id}` },
        'aria-label': `Retry job ${j.id}`,
        onclick: async (e) => { if (await retryJob(j.id, e.currentTarget)) onRetried?.(); } },
      'Retry')
      : null;
    return h('tr', { dataset: { jobId: j.id, state: j.state } },
      h('td', { 'data-label': 'Job' }, j.id),
      withLead ? h('td', { 'data-label': 'Lead' },
        j.leadId ? h('a', { href: `#/leads/${encodeURIComponent(j.leadId)}` }, 'Open lead') : '') : null,
      h('td', { 'data-label': 'Name' }, j.name,
        what?.(j) ? h('span', { class: 'what' }, what(j)) : null),
      h('td', { 'data-label': 'State' }, badge(j.state)),
      h('td', { 'data-label': 'Attempts' }, `${j.attemptsMade} of ${j.maxAttempts}`),
      h('td', { 'data-label': 'Last error', class: j.lastError ? 'error' : '' }, j.lastError || ''),
      h('td', { 'data-label': j.finishedAt ? 'Finished' : 'Runs' }, time(j.finishedAt || j.runAt)),
      h('td', { 'data-label': 'Action' }, retry));
  });
  return h('table', { class: 'jobs' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {},
      ['Job', withLead ? 'Lead' : null, 'Name', 'State', 'Attempts', 'Last error', 'When', 'Action']
        .filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows));
}
