-- complete: an active job of ours finished. ARGV: P, id, token, now, returnvalue (JSON),
-- keep (completed jobs kept: -1 all, 0 none, N the newest N). Returns 0 or a release() code.
local P, id, now = ARGV[1], ARGV[2], ARGV[4]
local rc = release(P, id, ARGV[3])
if rc ~= 0 then return rc end
local n = max_events(P)
local jk = P .. id
local keep = tonumber(ARGV[6])
redis.call('HINCRBY', jk, 'atm', 1)
if keep == 0 then
  redis.call('DEL', jk, jk .. ':logs')
else
  redis.call('ZADD', P .. 'completed', now, id)
  redis.call('HSET', jk, 'returnvalue', ARGV[5], 'finishedOn', now)
  trim_finished(P, 'completed', keep)
end
emit(P, n, 'completed', 'jobId', id, 'returnvalue', ARGV[5], 'prev', 'active')
maybe_drained(P, n)
return 0
