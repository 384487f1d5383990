-- Find or create a job, and subscribe its caller, in one step.
-- KEYS[1] job: the job hash
-- KEYS[2] history: the job's history list
-- KEYS[3] active: zset of active jobs by last update
-- KEYS[4] state_index: the index of the new job's state
-- KEYS[5] created: the index of all jobs by creation time
-- KEYS[6] subscriptions: the job's subscriptions hash
-- KEYS[7] hooks: the set of the job's subscriptions with a webhook
-- KEYS[8] webhooks_due: zset of webhook deliveries due
-- KEYS[9] queue: the Celery queue (a list) of the job's first message
-- ARGV[1] now: the time
-- ARGV[2] entry: the history entry, JSON
-- ARGV[3] state: the state to create the job in
-- ARGV[4] sub_id: the subscription id ("" = none)
-- ARGV[5] subscription: the subscription, JSON
-- ARGV[6] has_webhook: "1" when it has a webhook
-- ARGV[7] max_subscribers: most subscriptions a job may have
-- ARGV[8] refused: ",A,B," states in which a job takes no subscriber (it ended without
--         stems: the caller retries it instead)
-- ARGV[9] message: the job's first message, pushed onto its queue in the same step as the
--         creation ("" = none)
-- ARGV[10] same_as: the request fields (JSON) an existing job must hold for this caller to
--         join it, when the caller chose the job id ("" = the id is the request's fingerprint)
-- ARGV[11..] fields: field/value pairs of the new job
-- Returns {created (0/1), state, subscribed (1 added, 0 already there or not taken, -1 full,
-- -2 the id names a job of another request: nothing changed), the job's hash as HGETALL reads
-- it when it was there already (so no second read is needed)}.
local state = redis.call('HGET', KEYS[1], 'state')
local created = 0
if not state then
  redis.call('HSET', KEYS[1], unpack(ARGV, 11))
  redis.call('RPUSH', KEYS[2], ARGV[2])
  if ARGV[9] ~= '' then redis.call('LPUSH', KEYS[9], ARGV[9]) end
  redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
  redis.call('ZADD', KEYS[4], ARGV[1], KEYS[1])
  redis.call('ZADD', KEYS[5], ARGV[1], KEYS[1])
  state = ARGV[3]
  created = 1
end
local found = {}
if created == 0 then
  found = redis.call('HGETALL', KEYS[1])
  if ARGV[10] ~= '' then
    local stored = cjson.decode(redis.call('HGET', KEYS[1], 'request') or '{}')
    for name, value in pairs(cjson.decode(ARGV[10])) do
      local held = stored[name]
      if held == nil then held = cjson.null end  -- a field an older version did not write
      if held ~= value then return {0, state, -2, found} end
    end
  end
end
if ARGV[4] == '' or string.find(ARGV[8], ',' .. state .. ',', 1, true) then
  return {created, state, 0, found}
end
local subscribed = 0
if redis.call('HEXISTS', KEYS[6], ARGV[4]) == 0 then
  if redis.call('HLEN', KEYS[6]) >= tonumber(ARGV[7]) then return {created, state, -1, found} end
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
return {created, state, subscribed, found}
