-- reprocess: a failed job back in line, as BullMQ's Job.retry('failed', {resetAttemptsMade:
-- true, resetAttemptsStarted: true}) leaves it (its reprocessJob script): out of `failed`; the
-- fields of the ended run deleted (finishedOn, processedOn, failedReason, atm, ats), the rest
-- kept (data, opts, timestamp, stacktrace, stc); pushed where a new job of the queue goes (the
-- wait list, or `paused` while a BullMQ 5 client has the queue paused; the other end of it for
-- opts.lifo; the prioritized set for a job with a priority, as BullMQ 6 does); a `waiting` event
-- with prev `failed`; the marker set unless the queue is paused or at its global concurrency.
-- Jobs of flows (a parentKey) are not SalesPad's: their parent is left as it is.
-- ARGV: P, id. Returns 0, -1 no such job, -4 active (a worker holds its lock: its failure may
-- not have reached Redis yet, try again later), -5 in another state (nothing changed).
local P, id = ARGV[1], ARGV[2]
local jk = P .. id
if redis.call('EXISTS', jk) == 0 then return -1 end
if redis.call('ZREM', P .. 'failed', id) == 0 then
  if redis.call('EXISTS', jk .. ':lock') == 1 then return -4 end
  return -5
end
redis.call('HDEL', jk, 'finishedOn', 'processedOn', 'failedReason', 'atm', 'ats')
local n = max_events(P)
local prio = tonumber(redis.call('HGET', jk, 'priority')) or 0
local ok, opts = pcall(cjson.decode, redis.call('HGET', jk, 'opts') or '{}')
if prio == 0 and ok and type(opts) == 'table' and opts.lifo == true then
  redis.call('RPUSH', wait_list(P), id)
  emit(P, n, 'waiting', 'jobId', id, 'prev', 'failed')
else
  make_waiting(P, n, id, 'failed')
end
if not paused_or_maxed(P) then
  redis.call('ZADD', P .. 'marker', 0, '0')
end
return 0
