-- assign.lua: commits a batch of placements as leases.
--
-- ARGV: prefix, leader token, now_ms, lease_deadline_ms,
--   prefetch_deadline_ms, now_us (for latency figures only), then per
--   placement:
--   job_id, agent_id, gpus (device indices "0,1", or '' for none),
--   timeout_ms (this lease's run-time limit)
-- A lease that lands beyond the agent's slots (prefetched: it will wait
-- for a slot there) gets the later deadline; the agent's heartbeats then
-- keep renewing it while it waits.
-- Each placement is committed only if the job is still queued and the
-- agent can take it (lease_refusal: alive, not draining, below its slots
-- plus prefetch, its named GPUs free).
-- Returns one string per placement: the new attempt number (the lease's
-- fencing token) on success, else the reason: not_queued,
-- agent_unavailable, agent_full, gpu_busy.

require_leader()
local now = ARGV[3]
local deadline = ARGV[4]
local prefetch_deadline = ARGV[5]
local now_us = ARGV[6]
local out = {}
for i = 7, #ARGV, 4 do
  local id, agent, gpus, timeout_ms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local devices = split_csv(gpus)
  local job = redis.call('HMGET', k_job(id), 'state', 'attempt')
  local refusal, slots, held
  if job[1] ~= 'queued' or redis.call('ZSCORE', K_QUEUE, id) == false then
    refusal = 'not_queued'
  else
    refusal, slots, held = lease_refusal(agent, devices)
  end
  if refusal then
    out[#out + 1] = refusal
  else
    local attempt = tonumber(job[2]) + 1
    local until_ms = deadline
    if held >= slots then
      until_ms = prefetch_deadline
    end
    redis.call('ZREM', K_QUEUE, id)
    lease_to(id, agent, attempt, gpus, devices, timeout_ms, now, until_ms, now_us)
    stat('assigned')
    out[#out + 1] = tostring(attempt)
  end
end
return out
