-- common.lua: helpers prepended to every script of this directory (cmake/embed_lua.cmake).
-- SalesPad's own scripts for BullMQ's Redis data layout (described in docs/redis-layout.md).
-- Every script gets the key prefix P = "<prefix>:<queue>:" as ARGV[1] and builds its keys from
-- it, as BullMQ's do: in Redis Cluster the prefix needs a hash tag. Times are ms from the client.

-- An integer as decimal text (Lua numbers are doubles; exact below 2^53).
local function num(x)
  return string.format('%.0f', x)
end

-- The events stream cap, written to meta on first use as BullMQ does.
local function max_events(P)
  local n = tonumber(redis.call('HGET', P .. 'meta', 'opts.maxLenEvents'))
  if not n then
    redis.call('HSET', P .. 'meta', 'opts.maxLenEvents', 10000)
    n = 10000
  end
  return n
end

local function emit(P, n, ...)
  redis.call('XADD', P .. 'events', 'MAXLEN', '~', n, '*', 'event', ...)
end

-- delayed score = due * 4096 + a sequence that keeps jobs due in the same ms in order.
local function delayed_score(P, due)
  local lo = due * 4096
  local top = redis.call('ZREVRANGEBYSCORE', P .. 'delayed', num(lo + 4095), num(lo),
                         'WITHSCORES', 'LIMIT', 0, 1)
  if top[2] then
    local s = tonumber(top[2]) + 1
    if s > lo + 4095 then s = lo + 4095 end
    return s
  end
  return lo
end

-- The due time of the earliest delayed job, or 0.
local function next_due(P)
  local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
  if first[2] then
    return math.floor(tonumber(first[2]) / 4096)
  end
  return 0
end

local function is_paused(P)
  return redis.call('HEXISTS', P .. 'meta', 'paused') == 1
end

-- Wakes workers blocked on the marker: "0" = a job is ready, "1" = the next delayed due time.
local function mark_ready(P)
  if not is_paused(P) then
    redis.call('ZADD', P .. 'marker', 0, '0')
  end
end

-- Whether a job made ready now must leave the marker alone: the queue is paused, or as many jobs
-- are active as its global concurrency (meta.concurrency) allows (BullMQ's isQueuePausedOrMaxed).
local function paused_or_maxed(P)
  local m = redis.call('HMGET', P .. 'meta', 'paused', 'concurrency')
  if m[1] then return true end
  if m[2] then return redis.call('LLEN', P .. 'active') >= tonumber(m[2]) end
  return false
end

local function mark_delayed(P)
  local due = next_due(P)
  if due > 0 then
    redis.call('ZADD', P .. 'marker', num(due), '1')
  end
end

-- The list runnable jobs go to: `wait`, except while a BullMQ 5 client (meta.version, written
-- by every Node Queue) has the queue paused: BullMQ 5 keeps them in `paused` then, and renames
-- it over `wait` on resume. BullMQ 6 keeps them in `wait` and only looks at meta.paused.
local function wait_list(P)
  if redis.call('HEXISTS', P .. 'meta', 'paused') == 1 then
    local v = redis.call('HGET', P .. 'meta', 'version')
    if v and string.match(v, '^bullmq:[1-5]%.') then
      return P .. 'paused'
    end
  end
  return P .. 'wait'
end

-- Puts a job in line: the prioritized zset when it has a priority, else the wait list (LPUSH:
-- workers take from the other end). Emits `waiting` (with prev when given).
local function make_waiting(P, n, id, prev)
  local prio = tonumber(redis.call('HGET', P .. id, 'priority')) or 0
  if prio > 0 then
    local pc = redis.call('INCR', P .. 'pc')
    redis.call('ZADD', P .. 'prioritized', num(prio * 4294967296 + (pc % 4294967296)), id)
  else
    redis.call('LPUSH', wait_list(P), id)
  end
  if prev then
    emit(P, n, 'waiting', 'jobId', id, 'prev', prev)
  else
    emit(P, n, 'waiting', 'jobId', id)
  end
end

-- Ends the ownership of an active job: 0, or -1 no such job, -2 no lock (it expired),
-- -6 another worker's lock, -3 not active. Changes nothing unless it returns 0.
local function release(P, id, token)
  local jk = P .. id
  if redis.call('EXISTS', jk) == 0 then return -1 end
  local cur = redis.call('GET', jk .. ':lock')
  if not cur then return -2 end
  if cur ~= token then return -6 end
  if redis.call('LREM', P .. 'active', -1, id) == 0 then return -3 end
  redis.call('DEL', jk .. ':lock')
  redis.call('SREM', P .. 'stalled', id)
  return 0
end

-- Appends the reason of a failed attempt to the job's stacktrace (a JSON array of strings).
local function push_stacktrace(jk, reason, limit)
  local st = {}
  local raw = redis.call('HGET', jk, 'stacktrace')
  if raw then
    local ok, v = pcall(cjson.decode, raw)
    if ok and type(v) == 'table' then st = v end
  end
  st[#st + 1] = reason
  while #st > limit do table.remove(st, 1) end
  redis.call('HSET', jk, 'stacktrace', cjson.encode(st))
end

-- Keeps the newest `keep` members of a finished set (completed/failed) and deletes the rest
-- with their job hashes. keep < 0: keep all.
local function trim_finished(P, set, keep)
  if keep < 0 then return end
  local excess = redis.call('ZCARD', P .. set) - keep
  if excess <= 0 then return end
  local old = redis.call('ZRANGE', P .. set, 0, excess - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', P .. id, P .. id .. ':logs')
  end
  redis.call('ZREMRANGEBYRANK', P .. set, 0, excess - 1)
end

-- A job already out of `active` fails for good.
local function finish_failed(P, n, id, reason, now, keep)
  local jk = P .. id
  local atm = redis.call('HINCRBY', jk, 'atm', 1)
  redis.call('HSET', jk, 'failedReason', reason, 'finishedOn', now)
  redis.call('HDEL', jk, 'defa')
  redis.call('ZADD', P .. 'failed', now, id)
  emit(P, n, 'failed', 'jobId', id, 'failedReason', reason, 'prev', 'active')
  local ok, opts = pcall(cjson.decode, redis.call('HGET', jk, 'opts') or '{}')
  if ok and type(opts) == 'table' and tonumber(opts.attempts) and atm >= tonumber(opts.attempts) then
    emit(P, n, 'retries-exhausted', 'jobId', id, 'attemptsMade', atm)
  end
  if keep == 0 then
    redis.call('ZREM', P .. 'failed', id)
    redis.call('DEL', jk, jk .. ':logs')
  else
    trim_finished(P, 'failed', keep)
  end
end

local function maybe_drained(P, n)
  if redis.call('LLEN', P .. 'wait') == 0 and redis.call('LLEN', P .. 'active') == 0
     and redis.call('ZCARD', P .. 'prioritized') == 0 then
    emit(P, n, 'drained')
  end
end

