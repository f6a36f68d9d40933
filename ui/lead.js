// lead.js: one lead: profile and status, the conversation per channel (in and out, with each
// message's delivery status and error), the timeline and the jobs, all from GET /leads/:id and
// reloaded when one of the lead's events comes in; and the actions: simulate a reply, send a
// message by hand, opt out of a channel or back in.

import { api } from './api.js';
import { badge, debounce, field, fill, h, serial, showErrors, time, toast } from './dom.js';
import { jobsTable } from './jobs.js';

const CHANNELS = { email: 'Email', whatsapp: 'WhatsApp', linkedin: 'LinkedIn', voice: 'Voice', ads: 'Ads' };
const KINDS = { welcome: 'Welcome', ai_reply: 'AI answer', reply: 'Reply', manual: 'Sent by hand' };
const KIND_WORDS = { welcome: 'welcome', ai_reply: 'AI answer', reply: 'reply', manual: 'manual message' };

const chName = (c) => CHANNELS[c] || c || '';

export function leadView(main, id) {
  let lead = null;
  let gone = false;
  const title = h('h1', { id: 'lead-title' }, 'Lead');
  const note = h('p', { class: 'note', role: 'status' });
  const profile = h('dl', { class: 'profile', id: 'lead-profile' });
  const optouts = h('div', { id: 'optouts', class: 'optouts' });
  const conversation = h('div', { id: 'conversation' });
  const timeline = h('ol', { id: 'timeline', class: 'timeline', 'aria-label': 'Timeline, newest first' });
  const jobs = h('div', { id: 'lead-jobs' });
  const older = h('p', { class: 'note', hidden: true });

  const reply = messageForm('reply', 'Simulate a reply', 'Simulate reply',
    'The prospect writes to us: the reply is stored and an answer is written a moment later.',
    (channel, subject, text) => api('POST', `/leads/${encodeURIComponent(id)}/reply`, {
      channel,
      messageContent: channel === 'email' ? { subject, body: text } : { text },
    }), 'Reply stored: the answer follows.');
  const send = messageForm('send', 'Send a message', 'Send message',
    'Queued at once and sent by a worker, unless the lead opted out of the channel.',
    (channel, subject, text) => api('POST', `/leads/${encodeURIComponent(id)}/messages`, {
      channel,
      channelMessage: channel === 'email' ? { subject, body: text } : { text },
    }), 'Message queued.');

  main.append(
    h('p', { class: 'back' }, h('a', { href: '#/leads' }, '← All leads')),
    title, note,
    h('div', { class: 'lead-grid' },
      h('section', { class: 'card area-profile', 'aria-label': 'Profile' }, profile,
        h('h2', {}, 'Contact'), optouts),
      h('section', { class: 'card area-conversation', 'aria-labelledby': 'conv-title' },
        h('h2', { id: 'conv-title' }, 'Conversation'), conversation, older),
      h('div', { class: 'area-actions' }, reply.el, send.el),
      h('section', { class: 'card area-timeline', 'aria-labelledby': 'tl-title' },
        h('h2', { id: 'tl-title' }, 'Timeline'), timeline),
      h('section', { class: 'card area-jobs', 'aria-labelledby': 'jobs-title' },
        h('h2', { id: 'jobs-title' }, 'Jobs'), jobs)));

  const load = serial(async () => {
    if (gone) return;
    let d;
    try {
      d = await api('GET', `/leads/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404 || e.status === 400) {
        gone = true;
        title.textContent = 'Lead not found';
        note.textContent = e.message;
        main.querySelector('.lead-grid').hidden = true;
      } else {
        note.textContent = `Could not load the lead: ${e.message}`;
      }
      return;
    }
    note.textContent = '';
    lead = d.lead;
    render(d);
  });
  const loadSoon = debounce(load, 60);

  function channelsOfLead() {
    return ['email', 'whatsapp'].filter((c) => (c === 'email' ? lead.email : lead.phone));
  }

  function render(d) {
    const l = d.lead;
    title.textContent = l.name;
    document.title = `${l.name} · SalesPad`;
    fill(profile,
      h('dt', {}, 'Status'), h('dd', { id: 'lead-status-value' }, badge(l.status)),
      h('dt', {}, 'Email'), h('dd', {}, l.email || '—'),
      h('dt', {}, 'Phone'), h('dd', {}, l.phone || '—'),
      h('dt', {}, 'Captured'), h('dd', {}, time(l.createdAt)),
      h('dt', {}, 'Updated'), h('dd', {}, time(l.updatedAt)));
    renderOptOuts(d.optOut || {});
    const channels = channelsOfLead();
    reply.setChannels(channels);
    send.setChannels(channels);

    const byChannel = Object.entries(d.messagesByChannel || {});
    fill(conversation, byChannel.length === 0 ? h('p', { class: 'note' }, 'No messages yet.')
      : byChannel.map(([ch, msgs]) => h('section', { class: 'channel', dataset: { channel: ch } },
        h('h3', {}, chName(ch)),
        h('ol', { class: 'messages', 'aria-label': `${chName(ch)} messages` }, msgs.map(messageItem)))));
    const cut = d.more ? Object.keys(d.more) : [];
    older.hidden = cut.length === 0;
    older.textContent = cut.length ? `Only the newest items of ${cut.join(', ')} are shown.` : '';
    fill(timeline, [...(d.events || [])].reverse().map(eventItem));
    const byId = new Map(byChannel.flatMap(([, list]) => list.map((m) => [m.id, m])));
    const what = (j) => {
      const m = byId.get(j.messageId);
      return m ? `${chName(m.channel)} ${KIND_WORDS[m.kind] || 'message'}` : '';
    };
    fill(jobs, jobsTable(d.jobs || [], { onRetried: load, what }));
  }

  function renderOptOuts(optOut) {
    const channels = channelsOfLead();
    if (!channels.length) {
      fill(optouts, h('p', { class: 'note' }, 'No address to contact.'));
      return;
    }
    fill(optouts, h('ul', { class: 'optout-list' }, channels.map((c) => {
      const o = optOut[c];
      const label = o ? `Opt back in to ${chName(c)}` : `Opt out of ${chName(c)}`;
      return h('li', { dataset: { channel: c, optedOut: o ? 'yes' : 'no' } },
        h('span', {}, h('strong', {}, chName(c)), ': ',
          o ? `opted out${o.reason ? ` (${o.reason})` : ''}${o.at ? ' since ' : ''}` : 'contacted',
          o && o.at ? time(o.at) : null),
        h('button', { type: 'button', class: 'small', dataset: { focus: `optout-${c}` },
          onclick: (e) => toggleOptOut(c, !o, e.currentTarget) }, label));
    })));
  }

  async function toggleOptOut(channel, out, button) {
    button.disabled = true;
    try {
      const r = out
        ? await api('POST', `/leads/${encodeURIComponent(id)}/opt-out`, { channel })
        : await api('DELETE', `/leads/${encodeURIComponent(id)}/opt-out?channel=${channel}`);
      toast(out ? `Opted out of ${chName(channel)}.` : `Opted back in to ${chName(channel)}.`);
      renderOptOuts(r.optOut || {});
      load();
    } catch (e) {
      button.disabled = false;
      toast(e.isMissingRoute ? 'This server has no opt-out routes (POST/DELETE /leads/:id/opt-out).'
        : `Could not change the opt-out: ${e.message}`, 'error');
    }
  }

  load();
  return {
    title: 'Lead',
    onEvent(ev) {
      if (ev.leadId === id) loadSoon();
    },
    refresh: load,
  };
}

function messageItem(m) {
  const cm = m.channelMessage || {};
  const inbound = m.direction === 'inbound';
  const who = inbound ? 'From the lead' : (KINDS[m.kind] || m.kind);
  const to = inbound ? cm.from : cm.to;
  return h('li', { class: `msg ${inbound ? 'in' : 'out'}`,
    dataset: { messageId: m.id, kind: m.kind, status: m.status, direction: m.direction } },
  h('div', { class: 'meta' }, h('span', { class: 'who' }, who), badge(m.status),
    h('span', { class: 'when' }, time(m.sentAt || m.createdAt))),
  cm.subject ? h('p', { class: 'subject' }, cm.subject) : null,
  h('p', { class: 'body' }, cm.body ?? cm.text ?? ''),
  h('p', { class: 'detail' }, [
    to ? `${inbound ? 'from' : 'to'} ${to}` : null,
    !inbound && m.attempts > 0 ? `${m.attempts} attempt${m.attempts > 1 ? 's' : ''}` : null,
  ].filter(Boolean).join(' · ')),
  m.lastError ? h('p', { class: 'error' }, m.lastError) : null);
}

function eventSummary(e) {
  const p = e.payload || {};
  const ch = chName(p.channel);
  switch (e.type) {
    case 'lead_added': return `Lead captured${p.source ? ` (${p.source})` : ''}`;
    case 'message_queued': return `${ch} ${KIND_WORDS[p.kind] || 'message'} queued`;
    case 'message_sent': return `${ch} message sent`;
    case 'message_failed':
      return `${ch} message failed${p.willRetry ? ' (will retry)' : ''}${p.error ? `: ${p.error}` : ''}`;
    case 'message_delivered': return `${ch} message delivered`;
    case 'message_read': return `${ch} message read`;
    case 'message_suppressed': return `${ch} message not sent: the lead opted out`;
    case 'message_retried': return `${ch} message retried by hand`;
    case 'reply_received': return `Reply received on ${ch}${p.source && p.source !== 'api' ? ` (${p.source})` : ''}`;
    case 'ai_reply_sent': return `AI answer sent on ${ch}`;
    case 'ai_reply_failed': return `AI answer failed${p.error ? `: ${p.error}` : ''}`;
    case 'ai_reply_skipped': return `No AI answer (${(p.reason || '').replaceAll('_', ' ')})`;
    case 'status_changed': return `Status ${p.from} → ${p.to}`;
    case 'address_added': return `${ch} address added: ${p.address}`;
    case 'opted_out': return `Opted out of ${ch || 'every channel'}${p.reason ? ` (${p.reason})` : ''}`;
    case 'opted_in': return `Opted back in to ${ch || 'every channel'}`;
    default: return e.type.replaceAll('_', ' ');
  }
}

function eventItem(e) {
  return h('li', { dataset: { type: e.type, eventId: e.id } },
    h('span', { class: 'when' }, time(e.createdAt)), ' ',
    h('span', { class: 'what' }, eventSummary(e)));
}

// The reply and the manual message forms: a channel, a subject (email only) and a text.
function messageForm(prefix, heading, action, hint, submitFn, done) {
  const channel = h('select', { id: `${prefix}-channel`, name: 'channel' });
  const subject = h('input', { id: `${prefix}-subject`, name: 'subject', autocomplete: 'off' });
  const text = h('textarea', { id: `${prefix}-text`, name: 'text', rows: 3, required: true });
  const subjectField = field('Subject', subject);
  const errors = h('p', { class: 'error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, action);
  const el = h('form', { class: 'card action', 'aria-labelledby': `${prefix}-title`, novalidate: true },
    h('h2', { id: `${prefix}-title` }, heading), h('p', { class: 'hint' }, hint),
    field('Channel', channel), subjectField, field(prefix === 'reply' ? 'Their message' : 'Message', text),
    errors, submit);
  const sync = () => { subjectField.hidden = channel.value !== 'email'; };
  channel.addEventListener('change', sync);
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    errors.textContent = '';
    submit.disabled = true;
    try {
      await submitFn(channel.value, subject.value, text.value);
      text.value = '';
      subject.value = '';
      toast(done);
    } catch (err) {
      showErrors(errors, err);
    } finally {
      submit.disabled = false;
    }
  });
  return {
    el,
    setChannels(list) {
      const current = channel.value;
      const same = [...channel.options].map((o) => o.value).join() === list.join();
      if (!same) {
        channel.replaceChildren(...list.map((c) => h('option', { value: c, selected: c === current }, chName(c))));
      }
      submit.disabled = list.length === 0;
      sync();
    },
  };
}
