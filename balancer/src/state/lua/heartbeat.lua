-- heartbeat.lua: an agent is alive and lists the jobs it holds.
--
-- A heartbeat keeps the agent, and so every lease it holds, alive: the
-- sweeper (expire.lua) fails the leases of an agent silent for longer than
-- the heartbeat timeout. A running lease the agent no longer lists is
-- failed at once, but only when the job started before the agent's
-- previous heartbeat was applied: events from one agent arrive in the
-- order it sent them, so that heartbeat's list was taken after the start,
-- and a job missing from a later list was dropped by the agent.
--
-- A listed job still 'assigned' (prefetched, waiting for a slot) has its
-- lease renewed for another heartbeat timeout.
--
-- A heartbeat from an agent shutting down (stopping '1') marks it
-- `stopping`: like a drained agent, it is leased nothing new
-- (lease_refusal) until a new incarnation registers.
--
-- Fields: agent, incarnation, stopping ('1' or '0'), then job_id, attempt
-- pairs (from ARGV[first] to ARGV[last]): running, waiting and finishing
-- jobs alike.
-- Returns {'ok', then job_id, outcome, history per failed lease},
-- {'unknown_agent'} (it must register), {'stale_incarnation'} (from a
-- replaced process) or {'dead_agent'} (declared dead; it must register
-- again as a new incarnation).

local function on_heartbeat(agent, incarnation, stopping, first, last, now, heartbeat_timeout)
  local key = k_agent(agent)
  local a = redis.call('HMGET', key, 'incarnation', 'state', 'beats')
  if not a[1] then
    stat('unknown_agent_events')
    return {'unknown_agent'}
  end
  if a[1] ~= incarnation then
    stat('stale_events')
    return {'stale_incarnation'}
  end
  if a[2] ~= 'alive' then
    return {'dead_agent'}
  end
  local beats = tonumber(a[3]) or 0
  local listed = {}
  local count = 0
  for i = first, last, 2 do
    listed[ARGV[i]] = tonumber(ARGV[i + 1])
    count = count + 1
  end
  local out = {'ok'}
  for _, id in ipairs(redis.call('SMEMBERS', k_agent_jobs(agent))) do
    local j = redis.call('HMGET', k_job(id), 'state', 'attempt', 'started_beat')
    local attempt = tonumber(j[2])
    if j[1] == 'assigned' and listed[id] == attempt then
      -- Held but not started (prefetched): the agent vouches for it, so
      -- its lease lasts as long as the agent keeps heartbeating.
      redis.call('ZADD', K_LEASES, string.format('%d', now + heartbeat_timeout), id)
    elseif j[1] == 'running' and listed[id] ~= attempt
        and (tonumber(j[3]) or 0) < beats then
      local r = fail_attempt(id, agent, attempt,
        'agent ' .. agent .. ' no longer runs this job', 0, now)
      out[#out + 1] = id
      out[#out + 1] = r[1]
      out[#out + 1] = r[2] or ''
    end
  end
  redis.call('HSET', key, 'last_seen', now, 'reported_running', count,
    'beats', beats + 1)
  if stopping == '1' then
    redis.call('HSET', key, 'stopping', '1')
  end
  redis.call('ZADD', K_SEEN, now, agent)
  return out
end
