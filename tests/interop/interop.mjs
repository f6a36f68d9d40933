#!/usr/bin/env node
// interop.mjs: the Node side of SalesPad's BullMQ interop tests (tests/interop/README.md).
//
//   node interop.mjs <version-dir> session        commands on stdin, answers on stdout
//   node interop.mjs <version-dir> events [json]  a QueueEvents: one line per event
//   node interop.mjs <version-dir> work [json]    a Worker: one line per processed job
//
// <version-dir> is tests/interop/bullmq5 or bullmq6: `bullmq` is loaded from its node_modules,
// so this one script drives either major. The queue comes from the environment, as for SalesPad:
// REDIS_URL (redis://[:password@]host[:port][/db]), QUEUE_NAME (default commands), QUEUE_PREFIX
// (default bull).
//
// Every line written to stdout is one JSON object. Long-running modes first print
// {"type":"ready",...} once connected, then {"type":"event"|"process"|"completed"|"failed"|
// "error",...} lines, and exit 0 after closing cleanly when stdin reaches EOF or on SIGTERM/SIGINT;
// the driver (test_interop.py) polls what they printed against deadlines.
//
// session: each stdin line is {"id":<n>,"cmd":<name>,...}; the answer is
// {"id":<n>,"ok":true,"result":...} or {"id":<n>,"ok":false,"error":"..."}. Commands:
//   version                 {"bullmq": "<npm version>"}
//   counts                  queue.getJobCounts() (every state)
//   jobs   {"types":[...]}  queue.getJobs(types, 0, -1, true), each job as by `job`
//   job    {"jobId":"..."}  queue.getJob(jobId) with getState(), or null
//   add    {"name","data","opts"}   queue.add(name, data, opts) -> {"id": ...}
//   retry  {"jobId","state","opts"} (await queue.getJob(jobId)).retry(state, opts): BullMQ's
//                                   retry of a finished job (state default "failed")
//   pause / resume / isPaused       queue.pause(), queue.resume(), queue.isPaused()
//
// events json: {"lastEventId": "0"} (default "0": the whole stream of this queue, so nothing
// added between the start and the first XREAD is missed; "$" = only what comes after).
// work json: {"concurrency":1, "lockDuration":..., "stalledInterval":..., "maxStalledCount":...,
// "name": worker name, "processMs": time each job takes, "failFirst": n (throw on the first n
// attempts of each job)}.

import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const [dirArg, mode, configArg] = process.argv.slice(2);
if (!dirArg || !['session', 'events', 'work'].includes(mode)) {
  process.stderr.write('usage: node interop.mjs <bullmq-version-dir> session|events|work [json]\n');
  process.exit(2);
}
const versionDir = path.resolve(dirArg);
const requireFromDir = createRequire(path.join(versionDir, 'package.json'));
const bullmq = requireFromDir('bullmq');
const bullmqVersion = requireFromDir('bullmq/package.json').version;
const config = configArg ? JSON.parse(configArg) : {};

const queueName = process.env.QUEUE_NAME || 'commands';
const prefix = process.env.QUEUE_PREFIX || 'bull';

function connectionFromUrl(text) {
  const u = new URL(text || 'redis://127.0.0.1:6379');
  if (u.protocol !== 'redis:') throw new Error(`REDIS_URL: only redis:// is supported (got ${text})`);
  const conn = {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    // Workers need it (BullMQ refuses or warns otherwise); harmless elsewhere.
    maxRetriesPerRequest: null,
  };
  const db = u.pathname.replace(/^\//, '');
  if (db) conn.db = Number(db);
  if (u.username) conn.username = decodeURIComponent(u.username);
  if (u.password) conn.password = decodeURIComponent(u.password);
  return conn;
}
const connection = connectionFromUrl(process.env.REDIS_URL);

function emit(obj) {
  // Pipes are synchronous on Linux: the line is out before the next statement runs.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function errText(e) {
  return e && e.message ? e.message : String(e);
}

async function jobView(job) {
  if (!job) return null;
  return {
    id: job.id,
    name: job.name,
    data: job.data,
    opts: job.opts,
    timestamp: job.timestamp,
    delay: job.delay,
    priority: job.priority,
    processedOn: job.processedOn ?? null,
    finishedOn: job.finishedOn ?? null,
    attemptsMade: job.attemptsMade,
    attemptsStarted: job.attemptsStarted ?? null,
    stalledCounter: job.stalledCounter ?? null,
    failedReason: job.failedReason ?? null,
    stacktrace: job.stacktrace ?? null,
    returnvalue: job.returnvalue ?? null,
    state: await job.getState(),
  };
}

// Runs `closeFn` once, on stdin EOF or a signal, then exits 0 (1 if closing failed).
function exitOn(closeFn) {
  let closing = false;
  const stop = async (why) => {
    if (closing) return;
    closing = true;
    const timer = setTimeout(() => {
      emit({ type: 'error', message: `close did not finish in 10 s (${why})` });
      process.exit(1);
    }, 10000);
    try {
      await closeFn();
      emit({ type: 'closed', why });
      clearTimeout(timer);
      process.exit(0);
    } catch (e) {
      emit({ type: 'error', message: `close: ${errText(e)}` });
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return stop;
}

async function session() {
  const queue = new bullmq.Queue(queueName, { connection, prefix });
  queue.on('error', (e) => emit({ type: 'error', message: errText(e) }));
  await queue.waitUntilReady();
  const commands = {
    version: async () => ({ bullmq: bullmqVersion }),
    counts: async () => queue.getJobCounts(),
    jobs: async (req) => {
      const jobs = await queue.getJobs(req.types, 0, -1, true);
      return Promise.all(jobs.map(jobView));
    },
    job: async (req) => jobView(await queue.getJob(String(req.jobId))),
    add: async (req) => {
      const job = await queue.add(req.name, req.data, req.opts || {});
      return { id: job.id, timestamp: job.timestamp };
    },
    retry: async (req) => {
      const job = await queue.getJob(String(req.jobId));
      if (!job) throw new Error(`no job ${req.jobId}`);
      await job.retry(req.state || 'failed', req.opts || {});
      return true;
    },
    pause: async () => (await queue.pause(), true),
    resume: async () => (await queue.resume(), true),
    isPaused: async () => queue.isPaused(),
  };
  const stop = exitOn(() => queue.close());
  emit({ type: 'ready', mode: 'session', bullmq: bullmqVersion, queue: queueName, prefix });
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      emit({ id: null, ok: false, error: `bad request line: ${errText(e)}` });
      continue;
    }
    const fn = commands[req.cmd];
    if (!fn) {
      emit({ id: req.id, ok: false, error: `unknown command ${req.cmd}` });
      continue;
    }
    try {
      emit({ id: req.id, ok: true, result: await fn(req) });
    } catch (e) {
      emit({ id: req.id, ok: false, error: errText(e) });
    }
  }
  await stop('stdin closed');
}

async function events() {
  const qe = new bullmq.QueueEvents(queueName, {
    connection,
    prefix,
    lastEventId: config.lastEventId ?? '0',
    blockingTimeout: config.blockingTimeout ?? 1000,
  });
  // Record every event QueueEvents emits (known or not) exactly as a listener receives it:
  // (args, streamId), or (streamId) for `drained`. `<event>:<jobId>` copies are skipped.
  const internal = new Set(['newListener', 'removeListener', 'error', 'ioredis:close']);
  const origEmit = qe.emit.bind(qe);
  qe.emit = (name, ...args) => {
    if (typeof name === 'string' && !internal.has(name) && !name.includes(':')) {
      let payload = {};
      let streamId = null;
      if (args.length && typeof args[0] === 'object' && args[0] !== null) {
        payload = args[0];
        streamId = args[1] ?? null;
      } else {
        streamId = args[0] ?? null;
      }
      emit({ ...payload, type: 'event', event: name, streamId, recvAt: Date.now() });
    }
    return origEmit(name, ...args);
  };
  qe.on('error', (e) => emit({ type: 'error', message: errText(e) }));
  await qe.waitUntilReady();
  const stop = exitOn(() => qe.close());
  emit({ type: 'ready', mode: 'events', bullmq: bullmqVersion, queue: queueName, prefix });
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.resume();
}

async function work() {
  const processMs = config.processMs ?? 0;
  const failFirst = config.failFirst ?? 0;
  const processor = async (job) => {
    emit({
      type: 'process',
      id: job.id,
      name: job.name,
      data: job.data,
      opts: job.opts,
      attemptsMade: job.attemptsMade,
      attemptsStarted: job.attemptsStarted ?? null,
      timestamp: job.timestamp,
      processedOn: job.processedOn ?? null,
      at: Date.now(),
    });
    if (processMs > 0) await new Promise((r) => setTimeout(r, processMs));
    if (job.attemptsMade < failFirst) {
      throw new Error(`node worker: injected failure of attempt ${job.attemptsMade + 1}`);
    }
    return { processedBy: 'node', bullmq: bullmqVersion, messageId: job.data && job.data.messageId };
  };
  const opts = { connection, prefix, concurrency: config.concurrency ?? 1, autorun: true };
  for (const k of ['lockDuration', 'stalledInterval', 'maxStalledCount', 'drainDelay', 'name']) {
    if (config[k] !== undefined) opts[k] = config[k];
  }
  const worker = new bullmq.Worker(queueName, processor, opts);
  worker.on('completed', (job, rv) =>
    emit({ type: 'completed', id: job.id, returnvalue: rv ?? null, attemptsMade: job.attemptsMade, at: Date.now() }));
  worker.on('failed', (job, e) =>
    emit({ type: 'failed', id: job ? job.id : null, message: errText(e), attemptsMade: job ? job.attemptsMade : null, at: Date.now() }));
  worker.on('stalled', (id) => emit({ type: 'stalled', id, at: Date.now() }));
  worker.on('error', (e) => emit({ type: 'error', message: errText(e) }));
  await worker.waitUntilReady();
  const stop = exitOn(() => worker.close());
  emit({ type: 'ready', mode: 'work', bullmq: bullmqVersion, queue: queueName, prefix });
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.resume();
}

const modes = { session, events, work };
modes[mode]().catch((e) => {
  emit({ type: 'error', message: `fatal: ${errText(e)}`, stack: e && e.stack });
  process.exit(1);
});
