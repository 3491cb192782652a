-- forget.lua: removes agents that have been dead longer than the operator
-- keeps them (--forget-agents-after), so a fleet whose agents come and go
-- (autoscaling, pods named afresh) does not grow its agent list forever.
--
-- ARGV: prefix, leader token, now_ms, forget_after_ms, limit
-- An agent is forgotten once its hash says dead since before
-- now - forget_after and it holds nothing: no leased job, no GPU. Its hash,
-- job set, GPU map and performance history are deleted, and it leaves
-- P:agents and P:agents:seen. If it comes back, it registers as new.
-- Returns the ids forgotten, at most `limit`.

require_leader()
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local forgotten = {}
for _, id in ipairs(redis.call('SMEMBERS', K_AGENTS)) do
  if #forgotten >= limit then break end
  local a = redis.call('HMGET', k_agent(id), 'state', 'died_at')
  local died = tonumber(a[2])
  if a[1] == 'dead' and died and died < cutoff
      and redis.call('SCARD', k_agent_jobs(id)) == 0
      and redis.call('HLEN', k_agent_gpus(id)) == 0 then
    redis.call('DEL', k_agent(id), k_agent_jobs(id), k_agent_gpus(id), k_agent_perf(id))
    redis.call('SREM', K_AGENTS, id)
    redis.call('ZREM', K_SEEN, id)
    forgotten[#forgotten + 1] = id
    stat('agents_forgotten')
  end
end
return forgotten
