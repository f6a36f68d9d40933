-- fail: an attempt failed and no other follows (attempts spent or a permanent error).
-- ARGV: P, id, token, now, reason, keep_failed (-1 all), stacktrace_limit.
-- Returns 0 or a release() code.
local P, id = ARGV[1], ARGV[2]
local rc = release(P, id, ARGV[3])
if rc ~= 0 then return rc end
local n = max_events(P)
push_stacktrace(P .. id, ARGV[5], tonumber(ARGV[7]))
finish_failed(P, n, id, ARGV[5], ARGV[4], tonumber(ARGV[6]))
maybe_drained(P, n)
return 0
