-- Find or create a job, and subscribe its caller, in one step.
-- KEYS: [1] job hash, [2] history list, [3] active-jobs zset, [4] the index of the new state,
--       [5] the index of all jobs by creation time, [6] subscriptions hash, [7] the set of
--       subscriptions with a webhook, [8] webhooks-due zset, [9] the Celery queue (a list)
--       of the job's first message.
-- ARGV: [1] now, [2] history JSON, [3] the state to create the job in, [4] subscription id
--       ("" = none), [5] subscription JSON, [6] "1" when it has a webhook, [7] most
--       subscriptions a job may have, [8] ",A,B," states in which a job takes no subscriber
--       (it ended without stems: the caller retries it instead), [9] the job's first message,
--       pushed onto its queue in the same step as the creation ("" = none), then field/value
--       pairs.
-- Returns {created (0/1), state, subscribed (1 added, 0 already there or not taken, -1 full)}.
local state = redis.call('HGET', KEYS[1], 'state')
local created = 0
if not state then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10))
  redis.call('RPUSH', KEYS[2], ARGV[2])
  if ARGV[9] ~= '' then redis.call('LPUSH', KEYS[9], ARGV[9]) end
  redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
  redis.call('ZADD', KEYS[4], ARGV[1], KEYS[1])
  redis.call('ZADD', KEYS[5], ARGV[1], KEYS[1])
  state = ARGV[3]
  created = 1
end
if ARGV[4] == '' or string.find(ARGV[8], ',' .. state .. ',', 1, true) then
  return {created, state, 0}
end
local subscribed = 0
if redis.call('HEXISTS', KEYS[6], ARGV[4]) == 0 then
  if redis.call('HLEN', KEYS[6]) >= tonumber(ARGV[7]) then return {created, state, -1} end
  subscribed = 1
end
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[7], ARGV[4])
else
  redis.call('SREM', KEYS[7], ARGV[4])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  -- The job has ended (DONE): its subscriptions expire with it, and a new subscriber with a
  -- webhook is told at once.
  redis.call('PEXPIRE', KEYS[6], ttl)
  redis.call('PEXPIRE', KEYS[7], ttl)
  if subscribed == 1 and ARGV[6] == '1' then
    redis.call('ZADD', KEYS[8], ARGV[1], KEYS[1] .. '#' .. ARGV[4])
  end
end
return {created, state, subscribed}
