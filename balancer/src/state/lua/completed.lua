-- completed.lua: an agent finished an attempt successfully. The result is
-- accepted only from the lease holder's current attempt, once per job
-- (invariant 2). A repeat of the accepted completion (a redelivered event)
-- answers 'duplicate' so the caller can re-publish the result.
-- Returns {'accepted', history, submitted_at, assigned_at, started_at},
-- {'duplicate', history, submitted_at, assigned_at, started_at}, {'stale', reason}
-- or {'unknown_job'}.

local function on_completed(agent, id, attempt, result, duration_ms, now)
  local key = k_job(id)
  -- Everything the accepted path needs, in one read: this is the hottest
  -- path in the fleet (one call per job).
  local job = redis.call('HMGET', key, 'state', 'attempt', 'agent', 'done_by',
    'gpus', 'history', 'kind', 'submitted_at', 'assigned_at', 'started_at',
    'assigned_us', 'started_us')
  if not job[1] then
    stat('unknown_job_events')
    return {'unknown_job'}
  end
  local current = job[3] == agent and tonumber(job[2]) == attempt
  if current and (job[1] == 'assigned' or job[1] == 'running') then
    -- release_lease and push_history, with the fields already in hand
    -- and one write of the job hash.
    redis.call('ZREM', K_LEASES, id)
    redis.call('SREM', k_agent_jobs(agent), id)
    free_gpus(agent, id, job[5])
    local history = append_history(job[6], {
      attempt = attempt, agent_id = agent, outcome = 'succeeded',
      duration_ms = duration_ms,
    })
    redis.call('HSET', key, 'state', 'succeeded', 'result', result,
      'finished_at', now, 'done_by', agent .. '/' .. attempt, 'error', '',
      'gpus', '', 'history', history)
    redis.call('HINCRBY', k_agent(agent), 'succeeded', 1)
    record_perf_kind(agent, job[7], true, duration_ms)
    retire(id)
    stat('succeeded')
    return {'accepted', history, job[8] or '', job[9] or '', job[10] or '',
      job[11] or '', job[12] or ''}
  end
  if job[1] == 'succeeded' and job[4] == agent .. '/' .. attempt then
    local t = redis.call('HMGET', key, 'history', 'submitted_at', 'assigned_at', 'started_at',
      'assigned_us', 'started_us')
    return {'duplicate', t[1], t[2] or '', t[3] or '', t[4] or '', t[5] or '', t[6] or ''}
  end
  return refuse(job[3], job[2], agent, attempt)
end
