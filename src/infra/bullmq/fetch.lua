-- fetch: promote due delayed jobs, then move the next job to active under our lock.
-- ARGV: P, now, token, lock_ms, max_failed_kept.
-- Returns {id, {field, value, ...}} or {'', next delayed due time or 0}.
local P, now, token, lockms = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
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
if is_paused(P) then return {'', next_due(P)} end
local limit = tonumber(redis.call('HGET', P .. 'meta', 'concurrency'))
if limit and redis.call('LLEN', P .. 'active') >= limit then return {'', 0} end
while true do
  local id = redis.call('RPOPLPUSH', P .. 'wait', P .. 'active')
  if not id then
    local top = redis.call('ZPOPMIN', P .. 'prioritized')
    if top[1] then
      id = top[1]
      redis.call('LPUSH', P .. 'active', id)
    else
      redis.call('DEL', P .. 'pc')
      return {'', next_due(P)}
    end
  end
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
      redis.call('SET', jk .. ':lock', token, 'PX', lockms)
      redis.call('HSET', jk, 'processedOn', ARGV[2])
      redis.call('HINCRBY', jk, 'ats', 1)
      emit(P, n, 'active', 'jobId', id, 'prev', 'waiting')
      if redis.call('LLEN', P .. 'wait') > 0 or redis.call('ZCARD', P .. 'prioritized') > 0 then
        mark_ready(P)
      end
      return {id, redis.call('HGETALL', jk)}
    end
  end
end
