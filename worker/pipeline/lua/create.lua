-- Create a job unless one exists under its id.
-- KEYS: job hash, history list, active-jobs zset, the index of the new state, the index of all
-- jobs by creation time. ARGV: now, history JSON, the state to create the job in, then
-- field/value pairs.
local state = redis.call('HGET', KEYS[1], 'state')
if state then return {0, state} end
local i = 4
while i <= #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
redis.call('ZADD', KEYS[4], ARGV[1], KEYS[1])
redis.call('ZADD', KEYS[5], ARGV[1], KEYS[1])
return {1, ARGV[3]}
