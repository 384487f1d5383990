-- Compare-and-set one job: apply a move only when the job is in an expected state and holds
-- the expected step token.
-- KEYS[1] job: the job hash
-- KEYS[2] history: the job's history list
-- KEYS[3] active: zset of active jobs by last update
-- KEYS[4] webhooks_due: zset of webhook deliveries due
-- KEYS[5] in_flight: zset of jobs holding a Vidgo slot
-- KEYS[6] ended: zset of ended jobs by when
-- KEYS[7] subscriptions: the job's subscriptions hash
-- KEYS[8] hooks: the set of the job's subscriptions with a webhook
-- KEYS[9] schedule: zset of waiting messages by due time
-- KEYS[10] schedule_messages: hash of the waiting messages
-- KEYS[11] schedule_wake: the promoter's wake list
-- KEYS[12] queue: the Celery queue (a list) the next message goes to
-- ARGV[1] expect: allowed states ",A,B,"
-- ARGV[2] token: the expected step token ("" = any)
-- ARGV[3] to: the new state ("" = keep)
-- ARGV[4] new_token: the new step token ("" = keep)
-- ARGV[5] now: the time of the move
-- ARGV[6] entry: the history entry, JSON without "from" ("" = none)
-- ARGV[7] ttl: seconds a job is kept once ended
-- ARGV[8] terminal: the terminal states ",A,B,"
-- ARGV[9] slot_free: states that hold no in-flight slot ",A,B,"
-- ARGV[10] index_prefix: the per-state index key prefix
-- ARGV[11] unless_subscribed: "1" to apply only while the job has no subscriber
-- ARGV[12] due: when the next message is due
-- ARGV[13] message: that message ("" = none)
-- ARGV[14] n_set: how many field/value pairs follow to set
-- ARGV[15..] pairs: n_set field/value pairs to set, then field/increment pairs
-- Returns {1, state before, vidgo_task_id after (JSON)} or {0, state (or '')}.
-- The per-state indexes (zsets scored by creation time, for listing) follow every move here.
-- A job that ends puts one entry per subscriber with a webhook ("<job key>#<subscription>")
-- into the webhooks-due zset in the same step, so no completion webhook can be lost between
-- the end and the send. A job moving to a state that holds no Vidgo slot leaves the in-flight
-- set in the same step, so no slot leaks. The job's next message is written in the same step
-- too: pushed onto its Celery queue when due now, else put in the schedule (one entry per
-- job, replacing any earlier one) for the promoter to push when due. A job that ends leaves
-- the schedule. So a hand-off can neither lose its message nor send it twice.
local current = redis.call('HMGET', KEYS[1], 'state', 'token', 'vidgo_task_id', 'created_at')
local state = current[1]
if not state then return {0, ''} end
if not string.find(ARGV[1], ',' .. state .. ',', 1, true) then return {0, state} end
if ARGV[2] ~= '' and current[2] ~= ARGV[2] then return {0, state} end
if ARGV[11] == '1' and redis.call('HLEN', KEYS[7]) > 0 then return {0, state} end
local task = current[3] or ''
local to = state
if ARGV[3] ~= '' then to = ARGV[3] end
-- One HSET for every field: the given ones, the state, the time, and the fresh token.
local sets = {'state', to, 'updated_at', ARGV[5]}
if ARGV[4] ~= '' then sets[5] = 'token'; sets[6] = ARGV[4] end
local n_set = tonumber(ARGV[14])
local i = 15
for _ = 1, n_set do
  sets[#sets + 1] = ARGV[i]
  sets[#sets + 1] = ARGV[i + 1]
  if ARGV[i] == 'vidgo_task_id' then task = ARGV[i + 1] end
  i = i + 2
end
redis.call('HSET', KEYS[1], unpack(sets))
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
if to ~= state then
  local created = tonumber(current[4]) or tonumber(ARGV[5])
  redis.call('ZREM', ARGV[10] .. state, KEYS[1])
  redis.call('ZADD', ARGV[10] .. to, created, KEYS[1])
end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[2], '{"from":"' .. state .. '",' .. string.sub(ARGV[6], 2))
end
if string.find(ARGV[9], ',' .. to .. ',', 1, true) then
  redis.call('ZREM', KEYS[5], KEYS[1])
end
if string.find(ARGV[8], ',' .. to .. ',', 1, true) then
  redis.call('ZREM', KEYS[3], KEYS[1])
  redis.call('ZADD', KEYS[6], ARGV[5], KEYS[1])
  for _, key in ipairs({KEYS[1], KEYS[2], KEYS[7], KEYS[8]}) do
    redis.call('EXPIRE', key, tonumber(ARGV[7]))
  end
  for _, sub in ipairs(redis.call('SMEMBERS', KEYS[8])) do
    redis.call('ZADD', KEYS[4], ARGV[5], KEYS[1] .. '#' .. sub)
  end
else
  if string.find(ARGV[8], ',' .. state .. ',', 1, true) then
    -- Active again (a retry of an ended job): it no longer expires and is no longer "ended".
    for _, key in ipairs({KEYS[1], KEYS[2], KEYS[7], KEYS[8]}) do
      redis.call('PERSIST', key)
    end
    redis.call('ZREM', KEYS[6], KEYS[1])
  end
  redis.call('ZADD', KEYS[3], ARGV[5], KEYS[1])
end
if ARGV[13] ~= '' then
  local due = tonumber(ARGV[12])
  if due <= tonumber(ARGV[5]) then
    redis.call('LPUSH', KEYS[12], ARGV[13])
    if redis.call('ZREM', KEYS[9], KEYS[1]) == 1 then redis.call('HDEL', KEYS[10], KEYS[1]) end
  else
    local first = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[9], due, KEYS[1])
    redis.call('HSET', KEYS[10], KEYS[1], KEYS[12] .. '\n' .. ARGV[13])
    if first[2] == nil or due < tonumber(first[2]) then
      redis.call('LPUSH', KEYS[11], '1')
      redis.call('LTRIM', KEYS[11], 0, 0)
    end
  end
elseif string.find(ARGV[8], ',' .. to .. ',', 1, true) then
  if redis.call('ZREM', KEYS[9], KEYS[1]) == 1 then redis.call('HDEL', KEYS[10], KEYS[1]) end
end
return {1, state, task}
