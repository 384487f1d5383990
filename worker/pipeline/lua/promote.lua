-- Push due entries of the schedule onto their Celery queues, oldest first, in one step.
-- KEYS[1] schedule: zset of waiting messages by due time
-- KEYS[2] schedule_messages: hash of the waiting messages
-- ARGV[1] now: the time
-- ARGV[2] limit: at most this many entries
-- ARGV[3] max_depth: leave a queue alone once it holds this many messages (so due work is
--         never buried under a backlog the workers cannot take)
-- Returns {entries pushed, entries left for a full queue, the next due time ('' = none)}.
-- Each entry leaves the schedule in the same step that pushes its message, so two promoters
-- racing can never push one entry twice, and a crash can never lose one.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local pushed, held = 0, 0
if #due > 0 then
  local raws = redis.call('HMGET', KEYS[2], unpack(due))
  local room, batches, done = {}, {}, {}
  for n, member in ipairs(due) do
    local raw = raws[n]
    if not raw then
      done[#done + 1] = member -- no message (cannot happen through the scripts): drop it
    else
      local cut = string.find(raw, '\n', 1, true)
      local queue = string.sub(raw, 1, cut - 1)
      if room[queue] == nil then
        room[queue] = tonumber(ARGV[3]) - redis.call('LLEN', queue)
        batches[queue] = {}
      end
      if room[queue] > 0 then
        room[queue] = room[queue] - 1
        local batch = batches[queue]
        batch[#batch + 1] = string.sub(raw, cut + 1)
        done[#done + 1] = member
        pushed = pushed + 1
      else
        held = held + 1
      end
    end
  end
  for queue, batch in pairs(batches) do
    if #batch > 0 then redis.call('LPUSH', queue, unpack(batch)) end
  end
  if #done > 0 then
    redis.call('ZREM', KEYS[1], unpack(done))
    redis.call('HDEL', KEYS[2], unpack(done))
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {pushed, held, first[2] or ''}
