-- Take or keep a lease: the caller holds it after this when it returns 1.
-- KEYS[1] lease: the lease key
-- ARGV[1] owner: the caller's identity
-- ARGV[2] ms: the lease's length in milliseconds
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
