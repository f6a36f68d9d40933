-- add: a new job (BullMQ's standard or delayed add). Idempotent on the job id, so an outbox
-- row published twice (a crash between publish and mark) is one job.
-- ARGV: P, id, name, data, opts, timestamp, delay, priority. Returns 1 added, 0 already there.
local P, id = ARGV[1], ARGV[2]
local jk = P .. id
redis.call('INCR', P .. 'id')
local n = max_events(P)
if redis.call('EXISTS', jk) == 1 then
  emit(P, n, 'duplicated', 'jobId', id)
  return 0
end
local ts, delay = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('HSET', jk, 'name', ARGV[3], 'data', ARGV[4], 'opts', ARGV[5], 'timestamp', ARGV[6],
           'delay', ARGV[7], 'priority', ARGV[8])
redis.call('XADD', P .. 'events', '*', 'event', 'added', 'jobId', id, 'name', ARGV[3])
if delay > 0 then
  local due = ts + delay
  redis.call('ZADD', P .. 'delayed', num(delayed_score(P, due)), id)
  emit(P, n, 'delayed', 'jobId', id, 'delay', num(due))
  mark_delayed(P)
else
  make_waiting(P, n, id, nil)
  mark_ready(P)
end
return 1
