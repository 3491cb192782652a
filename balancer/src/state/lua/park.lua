-- park.lua: sets aside queued jobs that no live agent can run.
--
-- ARGV: prefix, leader token, now_ms, then pairs: job_id, reason
-- A parked job stays 'queued' (with its reason for the operator) but
-- leaves the queue, so it cannot hold back the jobs behind it; its time
-- unschedulable counts from the first time it was parked (the sorted
-- set's score), for the sweeper's unschedulable timeout. unpark.lua puts
-- every parked job back when the fleet changes.
-- Returns the number of jobs parked.

require_leader()
local now = ARGV[3]
local parked = 0
for i = 4, #ARGV, 2 do
  local id, reason = ARGV[i], ARGV[i + 1]
  if redis.call('ZREM', K_QUEUE, id) == 1 then
    local key = k_job(id)
    local since = redis.call('HGET', key, 'unschedulable_since')
    if not since or since == '' then
      since = now
    end
    redis.call('HSET', key, 'unschedulable_reason', reason, 'unschedulable_since', since)
    redis.call('ZADD', K_PARKED, since, id)
    parked = parked + 1
  end
end
return parked
