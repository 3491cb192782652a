-- unpark.lua: returns every parked job to the queue, at its old place.
--
-- ARGV: prefix, leader token
-- Called when the fleet changes (an agent joins, returns, or stops
-- draining): a job no agent could run may fit the new one. The scheduler
-- parks again whatever still fits nobody.
-- Returns the number of jobs returned.

require_leader()
local ids = redis.call('ZRANGE', K_PARKED, 0, -1)
for _, id in ipairs(ids) do
  local j = redis.call('HMGET', k_job(id), 'state', 'rank', 'seq')
  if j[1] == 'queued' then
    redis.call('ZADD', K_QUEUE, queue_score(tonumber(j[2]), tonumber(j[3])), id)
  end
end
redis.call('DEL', K_PARKED)
return #ids
