-- Record one finished part of a job's post-processing, once; the part that finishes the set
-- hands the job to its join in the same step (a fresh token, the join's message sent), so the
-- join runs once however the parts race, and no part's late duplicate can act after it.
-- KEYS[1] job: the job hash
-- KEYS[2] parts: the hash of the job's finished parts (part -> its result)
-- KEYS[3] history: the job's history list
-- KEYS[4] active: zset of active jobs by last update
-- KEYS[5] queue: the Celery queue (a list) the join's message goes to
-- ARGV[1] token: the step token the part's message carries
-- ARGV[2] state: the state the job must be in
-- ARGV[3] part: the part's name
-- ARGV[4] result: the part's result, JSON
-- ARGV[5] count: how many parts the job has
-- ARGV[6] new_token: the join's step token
-- ARGV[7] message: the join's message
-- ARGV[8] now: the time
-- ARGV[9] entry: the history entry, JSON
-- Returns 0 when the job is not in that state or holds another token, 1 when the part was
-- recorded, 2 when it was the last one (the join was sent), 3 when it was recorded already.
local current = redis.call('HMGET', KEYS[1], 'state', 'token')
if current[1] ~= ARGV[2] or current[2] ~= ARGV[1] then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4]) == 0 then return 3 end
redis.call('RPUSH', KEYS[3], ARGV[9])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[8], 'next_due_at', ARGV[8])
redis.call('ZADD', KEYS[4], ARGV[8], KEYS[1])
if redis.call('HLEN', KEYS[2]) < tonumber(ARGV[5]) then return 1 end
redis.call('HSET', KEYS[1], 'token', ARGV[6])
redis.call('LPUSH', KEYS[5], ARGV[7])
return 2
