-- assign.lua: commits a batch of placements as leases.
--
-- ARGV: prefix, leader token, now_ms, lease_deadline_ms, then pairs:
--   job_id, agent_id
-- Each pair is committed only if the job is still queued, the agent is
-- alive, and the agent holds fewer leases than its slots (invariant 3).
-- Returns one string per pair: the new attempt number (the lease's fencing
-- token) on success, else the reason: not_queued, agent_unavailable,
-- agent_full.

require_leader()
local now = ARGV[3]
local deadline = ARGV[4]
local out = {}
for i = 5, #ARGV, 2 do
  local id, agent = ARGV[i], ARGV[i + 1]
  local key = k_job(id)
  local job = redis.call('HMGET', key, 'state', 'attempt')
  local a = redis.call('HMGET', k_agent(agent), 'state', 'slots')
  if job[1] ~= 'queued' then
    out[#out + 1] = 'not_queued'
  elseif a[1] ~= 'alive' then
    out[#out + 1] = 'agent_unavailable'
  elseif redis.call('SCARD', k_agent_jobs(agent)) >= tonumber(a[2]) then
    out[#out + 1] = 'agent_full'
  else
    local attempt = tonumber(job[2]) + 1
    redis.call('ZREM', K_QUEUE, id)
    redis.call('HSET', key, 'state', 'assigned', 'attempt', attempt,
      'agent', agent, 'assigned_at', now)
    redis.call('SADD', k_agent_jobs(agent), id)
    redis.call('ZADD', K_LEASES, deadline, id)
    stat('assigned')
    out[#out + 1] = tostring(attempt)
  end
end
return out
