-- stalled: recover jobs whose worker died. At most once per interval across all workers
-- (`stalled-check`). A job found in `stalled` (marked by the previous check) whose lock has
-- expired goes back to the front of `wait`, or fails when it stalled more than max_stalled
-- times; then every active job is marked for the next check (a live worker's lock renewal or
-- finish unmarks it). ARGV: P, now, interval_ms, max_stalled, keep_failed.
-- Returns {recovered ids, failed ids}, or {} when another worker checked recently.
local P, now = ARGV[1], ARGV[2]
if not redis.call('SET', P .. 'stalled-check', now, 'NX', 'PX', ARGV[3]) then
  return {}
end
local n = max_events(P)
local maxst = tonumber(ARGV[4])
local recovered, failed = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'stalled')) do
  local jk = P .. id
  if redis.call('EXISTS', jk .. ':lock') == 0 and redis.call('LREM', P .. 'active', 1, id) > 0 then
    if redis.call('EXISTS', jk) == 1 then
      local stc = redis.call('HINCRBY', jk, 'stc', 1)
      if stc > maxst then
        finish_failed(P, n, id, 'job stalled more than allowable limit', now, tonumber(ARGV[5]))
        failed[#failed + 1] = id
      else
        redis.call('RPUSH', wait_list(P), id)
        emit(P, n, 'waiting', 'jobId', id, 'prev', 'active')
        emit(P, n, 'stalled', 'jobId', id)
        mark_ready(P)
        recovered[#recovered + 1] = id
      end
    end
  end
end
redis.call('DEL', P .. 'stalled')
local act = redis.call('LRANGE', P .. 'active', 0, -1)
for i = 1, #act, 1000 do
  redis.call('SADD', P .. 'stalled', unpack(act, i, math.min(i + 999, #act)))
end
return {recovered, failed}
