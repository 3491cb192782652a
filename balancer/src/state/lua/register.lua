-- register.lua: an agent announces itself. A new incarnation means the
-- agent process restarted: whatever the old process held will never
-- complete, so each such lease ends as a failed attempt right away.
-- Returns {'ok', leases_held_after, then for each job that this
-- dead-lettered: job_id, history}.

local function on_register(agent, incarnation, slots, prefetch, caps, now)
  local key = k_agent(agent)
  local previous = redis.call('HGET', key, 'incarnation')
  redis.call('HSET', key, 'id', agent, 'incarnation', incarnation,
    'slots', slots, 'prefetch', prefetch, 'caps', caps, 'state', 'alive',
    'registered_at', now, 'last_seen', now, 'beats', 0)
  -- A process that registers is not the one that was shutting down.
  redis.call('HDEL', key, 'stopping')
  redis.call('SADD', K_AGENTS, agent)
  redis.call('ZADD', K_SEEN, now, agent)
  local dead = {}
  if previous and previous ~= incarnation then
    for _, id in ipairs(redis.call('SMEMBERS', k_agent_jobs(agent))) do
      local attempt = tonumber(redis.call('HGET', k_job(id), 'attempt'))
      if attempt then
        local r = fail_attempt(id, agent, attempt, 'agent restarted', 0, now)
        if r[1] == 'dead' then
          dead[#dead + 1] = id
          dead[#dead + 1] = r[2]
        end
      else
        redis.call('SREM', k_agent_jobs(agent), id)
      end
    end
  end
  local out = {'ok', tostring(redis.call('SCARD', k_agent_jobs(agent)))}
  for _, v in ipairs(dead) do out[#out + 1] = v end
  return out
end
