-- started.lua: an agent began an attempt. Only the lease holder's current
-- attempt moves the job to running; its lease then lasts for the lease's
-- timeout times the buffer.
-- Returns {'ok'}, {'duplicate'}, {'stale', reason} or {'unknown_job'}.

local function on_started(agent, id, attempt, now, buffer, now_us)
  local key = k_job(id)
  local job = redis.call('HMGET', key, 'state', 'attempt', 'agent', 'lease_timeout_ms',
    'timeout_ms')
  if not job[1] then
    stat('unknown_job_events')
    return {'unknown_job'}
  end
  if job[3] ~= agent or tonumber(job[2]) ~= attempt then
    return refuse(job[3], job[2], agent, attempt)
  end
  if job[1] == 'assigned' then
    -- started_beat: how many heartbeats of this agent preceded the start;
    -- heartbeat.lua only holds a job's absence against the agent once a
    -- later heartbeat must have listed it.
    local beats = redis.call('HGET', k_agent(agent), 'beats') or 0
    redis.call('HSET', key, 'state', 'running', 'started_at', now,
      'started_beat', beats, 'started_us', now_us or '')
    -- A lease from before per-lease limits has only the job's own.
    local limit = tonumber(job[4]) or tonumber(job[5]) or DEFAULT_TIMEOUT_MS
    local deadline = now + math.ceil(limit * buffer)
    redis.call('ZADD', K_LEASES, string.format('%d', deadline), id)
    stat('started')
    return {'ok'}
  elseif job[1] == 'running' then
    return {'duplicate'}
  end
  return refuse(job[3], job[2], agent, attempt)
end
