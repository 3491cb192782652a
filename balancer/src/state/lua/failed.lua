-- failed.lua: an agent reports an attempt failed. Only the lease holder's
-- current attempt counts; the job is re-queued one class up or, with its
-- attempts spent, dead-lettered. An attempt the agent handed back as it
-- stopped (handed_back '1') is spared like one lost to a crash (`spare`),
-- and does not count against the agent.
-- Returns {'requeued'}, {'dead', history}, {'duplicate_dead', history} (a
-- redelivered copy of the failure that killed it), {'stale', reason} or
-- {'unknown_job'}.

local function on_failed(agent, id, attempt, err, duration_ms, now, handed_back)
  local job = redis.call('HMGET', k_job(id), 'state', 'attempt', 'agent')
  if not job[1] then
    stat('unknown_job_events')
    return {'unknown_job'}
  end
  local current = job[3] == agent and tonumber(job[2]) == attempt
  if current and (job[1] == 'assigned' or job[1] == 'running') then
    if handed_back == '1' then
      spare(id)
      return fail_attempt(id, agent, attempt, err, duration_ms, now, true)
    end
    return fail_attempt(id, agent, attempt, err, duration_ms, now)
  end
  if current and job[1] == 'dead' then
    return {'duplicate_dead', redis.call('HGET', k_job(id), 'history')}
  end
  return refuse(job[3], job[2], agent, attempt)
end
