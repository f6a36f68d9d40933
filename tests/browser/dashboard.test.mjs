// dashboard.test.mjs: the dashboard (ui/, served by the binary at /) in a real browser:
// Debian's chromium driven by puppeteer-core (pinned in package-lock.json), against the real
// salespad binary on a temp SQLite database.
//
//   SALESPAD_BIN=build/salespad SALESPAD_BROWSER_OUT=build/browser node tests/browser/dashboard.test.mjs
//
// Processes: `salespad serve --no-worker` (the API, the page and the event stream) and a
// `salespad worker` beside it on the same database, stopped and started again with other
// settings as the story needs: none at all while a message must stay queued, MOCK_FAIL_RATE=1
// to make a dead letter, a healthy one to retry it. A second `serve` with API_KEYS checks the
// page with a key. Every wait polls the page against a deadline (no sleeps). Console errors
// (console.error, uncaught exceptions, failed loads the browser logs) fail the test that was
// running. Screenshots of each page go to SALESPAD_BROWSER_OUT (CTest: <build>/browser).
//
// Without chromium the run is skipped (exit 77), except under CI=true, where it fails.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const BIN = path.resolve(process.env.SALESPAD_BIN || path.join(HERE, '../../build/salespad'));
const OUT = path.resolve(process.env.SALESPAD_BROWSER_OUT || path.join(HERE, '../../build/browser'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const KEY = 'browser-test-key-1';
const WAIT_MS = 15000;

if (!existsSync(CHROMIUM)) {
  const msg = `chromium not found at ${CHROMIUM} (scripts/deps.sh test installs Debian's chromium)`;
  if (process.env.CI === 'true') {
    console.error(`FAIL: ${msg}`);
    process.exit(1);
  }
  console.log(`SKIP: ${msg}`);
  process.exit(77);
}
const { default: puppeteer } = await import('puppeteer-core');

// ---- processes ----------------------------------------------------------------------------

const dir = mkdtempSync(path.join(os.tmpdir(), 'salespad-browser-'));
const procs = new Set();

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

class Proc {
  constructor(name, args, env) {
    this.name = name;
    this.log = path.join(dir, `${name}.log`);
    const fd = openSync(this.log, 'a');
    this.child = spawn(BIN, args, {
      cwd: dir,
      stdio: ['ignore', fd, fd],
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: `sqlite:${path.join(dir, 'sp.db')}`,
        MOCK_SINK: path.join(dir, 'sink.jsonl'),
        LOG_LEVEL: 'info',
        JOB_BACKOFF_MS: '20',
        ...env,
      },
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, sig) => resolve({ code, sig })));
    procs.add(this);
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15000);
    const { code, sig } = await this.exited;
    clearTimeout(timer);
    procs.delete(this);
    assert.equal(code, 0, `${this.name} exited with ${code ?? sig}: ${this.tail()}`);
  }

  tail() {
    return readFileSync(this.log, 'utf8').split('\n').slice(-15).join('\n');
  }
}

async function serve(name, env = {}) {
  const port = await freePort();
  const p = new Proc(name, ['serve', '--no-worker'], { PORT: String(port), ...env });
  p.url = `http://127.0.0.1:${port}`;
  await until(`${name} to answer /health`, async () => (await fetch(`${p.url}/health`)).ok);
  return p;
}

function worker(name, env = {}) {
  return new Proc(name, ['worker'], env);
}

let api; // the API of the keyless serve

async function call(method, route, body, headers = {}) {
  const r = await fetch(`${api.url}${route}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${route}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// ---- the browser --------------------------------------------------------------------------

let browser;
const consoleErrors = [];

async function newPage(context = browser, width = 1280) {
  const page = await context.newPage();
  await page.setViewport({ width, height: 900 });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`${m.text()} ${m.location()?.url || ''}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.setDefaultTimeout(WAIT_MS);
  return page;
}

function noConsoleErrors() {
  const errs = consoleErrors.splice(0);
  assert.deepEqual(errs, [], 'console errors');
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

// What the page shows, for a failed wait's message: where it is, its heading and notes, the
// live stream's state, the focused element.
function pageState(page) {
  return page.evaluate(() => {
    const text = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent.trim()).filter(Boolean);
    const a = document.activeElement;
    return JSON.stringify({
      hash: location.hash,
      h1: text('h1'),
      notes: text('.note, .error, .toast'),
      live: document.querySelector('#live')?.dataset.state,
      focus: a ? `${a.tagName.toLowerCase()}${a.id ? `#${a.id}` : ''}${a.className ? `.${a.className}` : ''}` : null,
      leads: text('#lead-list li .name').slice(0, 5),
    });
  }).catch((e) => `(page state unavailable: ${e.message})`);
}

// Waits until fn(...args) is truthy in the page; a timeout says what the page showed.
//
// fn runs guarded: a throw counts as "not yet". puppeteer-core's interval poller (25.x) calls
// the predicate once before it starts its timer, and a throw there ends the poller without a
// word: the wait then runs to its timeout even once the page shows what was awaited. That
// happened here with `querySelector('#lead-title').textContent` evaluated just before the
// hashchange had built the lead page (1 run in 5 or so).
async function inPage(page, fn, ...args) {
  const guarded = new Function('...a', `try { return (${fn})(...a); } catch { return false; }`);
  try {
    return await page.waitForFunction(guarded, { timeout: WAIT_MS, polling: 50 }, ...args);
  } catch (e) {
    e.message += `\n  waiting for: ${fn}\n  the page: ${await pageState(page)}`;
    throw e;
  }
}

const msgs = (page, sel) => page.$$eval(`#conversation li.msg${sel}`, (els) => els.map((e) => e.dataset.status));

let w; // the worker of the moment
let page;
let lead; // the lead captured in the UI

before(async () => {
  mkdirSync(OUT, { recursive: true });
  api = await serve('serve');
  w = worker('worker1');
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-dev-shm-usage',
      '--disable-gpu', '--no-first-run', '--disable-extensions'],
  });
  page = await newPage();
});

after(async () => {
  await browser?.close();
  for (const p of [...procs]) {
    try {
      await p.stop();
    } catch (e) {
      console.error(String(e));
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

test('a lead captured in the UI: both welcome messages turn sent without a reload', async () => {
  await page.goto(`${api.url}/`);
  await page.waitForSelector('#new-name');
  await inPage(page, () => document.querySelector('#live').dataset.state === 'live'); // GET /events
  await page.evaluate(() => { window.notReloaded = true; });
  // Keyboard alone: type, Tab to the next field, Enter submits.
  await page.focus('#new-name');
  await page.keyboard.type('Ana Browser');
  await page.keyboard.press('Tab');
  await page.keyboard.type('ana.browser@example.com');
  await page.keyboard.press('Tab');
  await page.keyboard.type('+351 912 345 678');
  await page.keyboard.press('Enter');
  await inPage(page, () => document.querySelector('#lead-list li .name')?.textContent === 'Ana Browser');
  lead = await page.$eval('#lead-list li', (li) => li.dataset.leadId);
  await shot(page, 'leads');
  await page.focus('#lead-list li a.lead-link');
  await page.keyboard.press('Enter');
  await inPage(page, () => document.querySelector('#lead-title').textContent === 'Ana Browser');
  await inPage(page, () => document.querySelectorAll('#conversation li.msg[data-kind="welcome"]').length === 2);
  await inPage(page, () => [...document.querySelectorAll('#conversation li.msg[data-kind="welcome"]')]
    .every((li) => li.dataset.status === 'sent'));
  await inPage(page, () => document.querySelector('#lead-status-value .badge').dataset.status === 'contacted');
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  assert.ok(await page.$('#timeline li[data-type="message_sent"]'), 'message_sent on the timeline');
  assert.ok(await page.$('#lead-jobs tr[data-state="completed"]'), 'completed jobs listed');
  await shot(page, 'lead');
  noConsoleErrors();
});

test('simulate a reply: the AI answer arrives', async () => {
  await page.select('#reply-channel', 'email');
  await page.type('#reply-subject', 'Welcome, Ana Browser!');
  await page.type('#reply-text', 'How much does it cost?');
  await page.click('form[aria-labelledby="reply-title"] button[type="submit"]');
  await page.waitForSelector('#conversation li.msg[data-kind="reply"][data-direction="inbound"]');
  await page.waitForSelector('#conversation li.msg[data-kind="ai_reply"][data-status="sent"]');
  await inPage(page, () => document.querySelector('#lead-status-value .badge').dataset.status === 'replied');
  assert.ok(await page.$('#timeline li[data-type="reply_received"]'), 'reply_received on the timeline');
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  await shot(page, 'lead-replied');
  noConsoleErrors();
});

test('opt out: a queued message ends suppressed', async () => {
  await w.stop(); // nothing is sent while the message waits
  await page.select('#send-channel', 'whatsapp');
  await page.type('#send-text', 'A word from our team');
  await page.click('form[aria-labelledby="send-title"] button[type="submit"]');
  await page.waitForSelector('#conversation li.msg[data-kind="manual"][data-status="queued"]');
  await page.click('#optouts li[data-channel="whatsapp"] button');
  await page.waitForSelector('#optouts li[data-channel="whatsapp"][data-opted-out="yes"]');
  w = worker('worker2');
  await page.waitForSelector('#conversation li.msg[data-kind="manual"][data-status="suppressed"]');
  await page.waitForSelector('#timeline li[data-type="message_suppressed"]');
  await shot(page, 'lead-suppressed');
  // And back in, with the keyboard: the button keeps the focus across the refresh.
  await page.focus('#optouts li[data-channel="whatsapp"] button');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#optouts li[data-channel="whatsapp"][data-opted-out="no"]');
  assert.deepEqual(await msgs(page, '[data-kind="manual"]'), ['suppressed'], 'suppressed stays suppressed');
  noConsoleErrors();
});

test('a dead letter, retried from the queue page', async () => {
  await w.stop();
  w = worker('worker-failing', { MOCK_FAIL_RATE: '1' }); // JOB_BACKOFF_MS=20: dead at once
  const dead = await call('POST', '/leads', { name: 'Dora Dead', email: 'dora.dead@example.com' });
  await page.goto(`${api.url}/#/queue`);
  const row = `#dead-letters tr[data-state="failed"]`;
  await page.waitForSelector(row);
  const job = await page.$eval(row, (tr) => ({ id: tr.dataset.jobId, error: tr.querySelector('td.error').textContent }));
  assert.match(job.error, /simulated random failure/);
  await inPage(page, () => document.querySelector('#queue-counts [data-state="failed"] dd').textContent === '1');
  await shot(page, 'queue');
  await w.stop();
  w = worker('worker3'); // MOCK_FAIL_RATE cleared
  await page.click(`#dead-letters tr[data-job-id="${job.id}"] button`);
  await page.waitForSelector('#no-dead');
  await inPage(page, () => document.querySelector('#queue-counts [data-state="failed"] dd').textContent === '0');
  await until('the retried message sent', async () => {
    const d = await call('GET', `/leads/${dead.id}`);
    return d.messagesByChannel.email[0].status === 'sent';
  });
  await inPage(page, () => document.querySelector('#queue-counts [data-state="waiting"] dd').textContent === '0');
  await shot(page, 'queue-retried');
  noConsoleErrors();
});

test('new leads appear at the top; search finds a lead by email prefix', async () => {
  await page.goto(`${api.url}/#/leads`);
  await page.waitForSelector('#lead-list li');
  const zed = await call('POST', '/leads', { name: 'Zed Prefix', email: 'zed.prefix@example.org' });
  await inPage(page, (id) => document.querySelector('#lead-list li')?.dataset.leadId === id, zed.id);
  await page.type('#lead-q', 'zed.pre');
  await inPage(page, (id) => {
    const items = [...document.querySelectorAll('#lead-list li')];
    return items.length === 1 && items[0].dataset.leadId === id;
  }, zed.id);
  await shot(page, 'leads-search');
  noConsoleErrors();
});

// Form controls and buttons without a name a screen reader could say.
const unlabelled = (page) => page.$$eval('input, select, textarea, button', (els) => els
  .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') ||
    (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 100)));

test('at 375 px wide nothing overflows, and every control has a label', async () => {
  const narrow = await newPage(browser, 375);
  for (const [route, name] of [['#/leads', 'leads'], [`#/leads/${lead}`, 'lead'], ['#/queue', 'queue']]) {
    await narrow.goto(`${api.url}/${route}`);
    await narrow.waitForSelector('main h1');
    await narrow.waitForNetworkIdle({ idleTime: 200 });
    const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `${route}: ${width} px wide`);
    assert.deepEqual(await unlabelled(narrow), [], `${route}: controls without a label`);
    await shot(narrow, `${name}-375px`);
  }
  await narrow.close();
  noConsoleErrors();
});

test('with API_KEYS the page asks for a key once and keeps it for the tab', async () => {
  const keyed = await serve('serve-keyed', { API_KEYS: KEY });
  const context = await browser.createBrowserContext(); // a fresh sessionStorage
  const p = await newPage(context);
  await p.goto(`${keyed.url}/#/leads/${lead}`);
  await p.waitForSelector('#key-dialog[open]');
  await shot(p, 'api-key');
  await p.type('#key-input', KEY);
  await p.keyboard.press('Enter');
  await inPage(p, () => document.querySelector('#lead-title').textContent === 'Ana Browser');
  await inPage(p, () => document.querySelector('#live').dataset.state === 'live'); // ?key=
  await p.reload();
  await inPage(p, () => document.querySelector('#lead-title').textContent === 'Ana Browser');
  assert.equal(await p.$('#key-dialog[open]'), null, 'no second prompt in the same tab');
  // Live through the keyed server too: a reply posted elsewhere shows up.
  await call('POST', `/leads/${lead}/reply`, { channel: 'email', messageContent: { body: 'Still there?' } });
  await inPage(p, () => document.querySelectorAll('#conversation li.msg[data-kind="reply"]').length === 2);
  await context.close();
  await keyed.stop();
  noConsoleErrors();
});
