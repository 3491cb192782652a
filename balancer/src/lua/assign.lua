-- assign.lua: commits a batch of placements as leases.
--
-- ARGV: prefix, leader token, now_ms, lease_deadline_ms, then triples:
--   job_id, agent_id, gpus (device indices "0,1", or '' for none)
-- Each placement is committed only if the job is still queued, the agent
-- is alive and not draining, it holds fewer leases than its slots
-- (invariant 3), and each named GPU of it is free.
-- Returns one string per placement: the new attempt number (the lease's
-- fencing token) on success, else the reason: not_queued,
-- agent_unavailable, agent_full, gpu_busy.

require_leader()
local now = ARGV[3]
local deadline = ARGV[4]
local out = {}
for i = 5, #ARGV, 3 do
  local id, agent, gpus = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = k_job(id)
  local job = redis.call('HMGET', key, 'state', 'attempt')
  local a = redis.call('HMGET', k_agent(agent), 'state', 'slots', 'draining')
  local devices = split_csv(gpus)
  local gpu_free = true
  for _, index in ipairs(devices) do
    if redis.call('HEXISTS', k_agent_gpus(agent), index) == 1 then gpu_free = false end
  end
  if job[1] ~= 'queued' or redis.call('ZSCORE', K_QUEUE, id) == false then
    out[#out + 1] = 'not_queued'
  elseif a[1] ~= 'alive' or a[3] == '1' then
    out[#out + 1] = 'agent_unavailable'
  elseif redis.call('SCARD', k_agent_jobs(agent)) >= tonumber(a[2]) then
    out[#out + 1] = 'agent_full'
  elseif not gpu_free then
    out[#out + 1] = 'gpu_busy'
  else
    local attempt = tonumber(job[2]) + 1
    redis.call('ZREM', K_QUEUE, id)
    redis.call('HSET', key, 'state', 'assigned', 'attempt', attempt,
      'agent', agent, 'assigned_at', now, 'gpus', gpus,
      'unschedulable_reason', '', 'unschedulable_since', '')
    for _, index in ipairs(devices) do
      redis.call('HSET', k_agent_gpus(agent), index, id)
    end
    redis.call('SADD', k_agent_jobs(agent), id)
    redis.call('ZADD', K_LEASES, deadline, id)
    stat('assigned')
    out[#out + 1] = tostring(attempt)
  end
end
return out
