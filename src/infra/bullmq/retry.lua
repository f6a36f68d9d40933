-- retry: an attempt failed and another follows, after delay_ms in `delayed` (BullMQ's
-- moveToDelayed) or at once in `wait` (its retryJob). No `failed` event for a retried attempt.
-- ARGV: P, id, token, now, delay_ms, reason, stacktrace_limit. Returns 0 or a release() code.
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local rc = release(P, id, ARGV[3])
if rc ~= 0 then return rc end
local n = max_events(P)
local jk = P .. id
local delay = tonumber(ARGV[5])
push_stacktrace(jk, ARGV[6], tonumber(ARGV[7]))
redis.call('HSET', jk, 'failedReason', ARGV[6])
redis.call('HINCRBY', jk, 'atm', 1)
if delay > 0 then
  local due = now + delay
  redis.call('HSET', jk, 'delay', num(delay))
  redis.call('ZADD', P .. 'delayed', num(delayed_score(P, due)), id)
  emit(P, n, 'delayed', 'jobId', id, 'delay', num(due))
  mark_delayed(P)
else
  make_waiting(P, n, id, 'active')
  mark_ready(P)
end
return 0
