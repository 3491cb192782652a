-- register.lua: an agent announces itself. A new incarnation means the
-- agent process restarted: whatever the old process held will never
-- complete, so each such lease ends as a failed attempt right away.
-- Returns {'ok', leases_held_after}.

local function on_register(agent, incarnation, slots, caps, now)
  local key = k_agent(agent)
  local previous = redis.call('HGET', key, 'incarnation')
  redis.call('HSET', key, 'id', agent, 'incarnation', incarnation,
    'slots', slots, 'caps', caps, 'state', 'alive',
    'registered_at', now, 'last_seen', now)
  redis.call('SADD', K_AGENTS, agent)
  if previous and previous ~= incarnation then
    for _, id in ipairs(redis.call('SMEMBERS', k_agent_jobs(agent))) do
      local attempt = tonumber(redis.call('HGET', k_job(id), 'attempt'))
      if attempt then
        fail_attempt(id, agent, attempt, 'agent restarted', 0, now)
      else
        redis.call('SREM', k_agent_jobs(agent), id)
      end
    end
  end
  return {'ok', tostring(redis.call('SCARD', k_agent_jobs(agent)))}
end
