-- Set fields of a job that exists, whatever its state, without moving it (bookkeeping such as
-- a webhook's delivery status).
-- KEYS[1] job: the job hash
-- ARGV[1..] pairs: field/value pairs to set
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local i = 1
while i <= #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
