-- stealable.lua: an agent's leased jobs that it has not started (its
-- prefetched ones), newest lease first, for work stealing. Read-only.
--
-- ARGV: prefix, agent_id, limit
-- Returns 7 fields per job: id, kind, args_json, rank, timeout_ms,
-- requires_json, attempt.

local agent, limit = ARGV[2], tonumber(ARGV[3])
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', k_agent_jobs(agent))) do
  local j = redis.call('HMGET', k_job(id), 'state', 'assigned_at')
  if j[1] == 'assigned' then
    found[#found + 1] = {id, tonumber(j[2]) or 0}
  end
end
table.sort(found, function(a, b) return a[2] > b[2] end)
local out = {}
for i = 1, math.min(limit, #found) do
  local id = found[i][1]
  local j = redis.call('HMGET', k_job(id), 'kind', 'args', 'rank', 'timeout_ms',
    'requires', 'attempt')
  out[#out + 1] = id
  for f = 1, 6 do out[#out + 1] = j[f] or '' end
end
return out
