-- Send the step of every part of a job's post-processing that is not done yet, once per step
-- token: a duplicate of the message that fans out sends nothing again, and a recovery kick
-- (a fresh token) sends again only the parts still missing.
-- KEYS[1] job: the job hash
-- KEYS[2] parts: the hash of the job's finished parts (part -> its result)
-- KEYS[3] queue: the Celery queue (a list) the part steps go to
-- ARGV[1] token: the step token the caller holds
-- ARGV[2] state: the state the job must be in
-- ARGV[3] fanned: this token as the job hash stores it (JSON), marking the fan-out done
-- ARGV[4..] messages: part/message pairs, one for every part of the job
-- Returns {0} when the job is not in that state or holds another token, {2} when every part
-- is done (the caller joins), else {1, the parts whose step was sent now...}.
local current = redis.call('HMGET', KEYS[1], 'state', 'token', 'fanned_token')
if current[1] ~= ARGV[2] or current[2] ~= ARGV[1] then return {0} end
local sent = {1}
local pending = 0
for i = 4, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    pending = pending + 1
    if current[3] ~= ARGV[3] then
      redis.call('LPUSH', KEYS[3], ARGV[i + 1])
      sent[#sent + 1] = ARGV[i]
    end
  end
end
if pending == 0 then return {2} end
redis.call('HSET', KEYS[1], 'fanned_token', ARGV[3])
return sent
