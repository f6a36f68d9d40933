-- extend: renew our lock on an active job. ARGV: P, id, token, lock_ms. Returns 1, or 0 when
-- the lock is not ours any more.
local P, id = ARGV[1], ARGV[2]
local lk = P .. id .. ':lock'
if redis.call('GET', lk) == ARGV[3] then
  redis.call('SET', lk, ARGV[3], 'PX', ARGV[4])
  redis.call('SREM', P .. 'stalled', id)
  return 1
end
return 0
