-- heartbeat.lua: an agent is alive and reports how many jobs it runs.
-- Returns {'ok'}, {'unknown_agent'} (it must register again) or
-- {'stale_incarnation'} (a heartbeat from a process that was replaced).

local function on_heartbeat(agent, incarnation, running, now)
  local key = k_agent(agent)
  local current = redis.call('HGET', key, 'incarnation')
  if not current then
    stat('unknown_agent_events')
    return {'unknown_agent'}
  end
  if current ~= incarnation then
    stat('stale_events')
    return {'stale_incarnation'}
  end
  redis.call('HSET', key, 'last_seen', now, 'reported_running', running)
  return {'ok'}
end
