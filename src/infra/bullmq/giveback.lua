-- giveback: hand an active job of ours back untouched (our database rejected the claim): to
-- the front of the line, without counting an attempt. ARGV: P, id, token.
-- Returns 0 or a release() code.
local P, id = ARGV[1], ARGV[2]
local rc = release(P, id, ARGV[3])
if rc ~= 0 then return rc end
local n = max_events(P)
redis.call('HINCRBY', P .. id, 'ats', -1)
redis.call('RPUSH', wait_list(P), id)
emit(P, n, 'waiting', 'jobId', id, 'prev', 'active')
mark_ready(P)
return 0
