-- fetch: promote due delayed jobs, then move up to `max` jobs to active, each under its own lock
-- token "<token>:<i>" (i = 1..max).
-- ARGV: P, now, token, lock_ms, max_failed_kept, max.
-- Returns {next delayed due time or 0, id1, {field, value, ...}, id2, {...}, ...}.
local P, now, token, lockms = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local max = tonumber(ARGV[6])
local n = max_events(P)
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', 0, num((now + 1) * 4096 - 1),
                       'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'delayed', id)
  if redis.call('EXISTS', P .. id) == 1 then
    make_waiting(P, n, id, 'delayed')
    redis.call('HSET', P .. id, 'delay', 0)
  end
end
if #due > 0 then mark_ready(P) end
if is_paused(P) then return {next_due(P)} end

-- The next runnable id moved to active, or nil.
local function next_id()
  local id = redis.call('RPOPLPUSH', P .. 'wait', P .. 'active')
  if id then return id end
  local top = redis.call('ZPOPMIN', P .. 'prioritized')
  if top[1] then
    redis.call('LPUSH', P .. 'active', top[1])
    return top[1]
  end
  redis.call('DEL', P .. 'pc')
  return nil
end

local out = {0}
local limit = tonumber(redis.call('HGET', P .. 'meta', 'concurrency'))
local taken = 0
while taken < max do
  if limit and redis.call('LLEN', P .. 'active') >= limit then break end
  local id = next_id()
  if not id then break end
  local jk = P .. id
  if string.sub(id, 1, 2) == '0:' or redis.call('EXISTS', jk) == 0 then
    -- an old-style marker id or a removed job: drop it
    redis.call('LREM', P .. 'active', 1, id)
  else
    local defa = redis.call('HGET', jk, 'defa')
    if defa then
      -- a stalled check (a Node worker's) deferred this job's failure to its next fetch
      redis.call('LREM', P .. 'active', -1, id)
      finish_failed(P, n, id, defa, ARGV[2], tonumber(ARGV[5]))
    else
      taken = taken + 1
      redis.call('SET', jk .. ':lock', token .. ':' .. taken, 'PX', lockms)
      redis.call('HSET', jk, 'processedOn', ARGV[2])
      redis.call('HINCRBY', jk, 'ats', 1)
      emit(P, n, 'active', 'jobId', id, 'prev', 'waiting')
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGETALL', jk)
    end
  end
end
if taken == 0 then
  out[1] = next_due(P)
elseif redis.call('LLEN', P .. 'wait') > 0 or redis.call('ZCARD', P .. 'prioritized') > 0 then
  mark_ready(P) -- more left: wake another worker
end
return out
