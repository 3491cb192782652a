-- drain.lua: stops or resumes new assignments to an agent.
--
-- ARGV: prefix, leader token, agent_id, '1' to drain or '0' to undrain
-- A draining agent keeps running what it holds; assign.lua gives it
-- nothing new.
-- Returns {'ok'} or {'unknown_agent'}.

require_leader()
local key = k_agent(ARGV[3])
if redis.call('EXISTS', key) == 0 then
  return {'unknown_agent'}
end
redis.call('HSET', key, 'draining', ARGV[4])
return {'ok'}
