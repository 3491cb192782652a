-- peek.lua: reads the head of the queue for the scheduler, without
-- changing anything.
--
-- ARGV: prefix, limit, offset
-- Returns 7 fields per queued job, in queue order:
--   id, kind, args_json, rank, timeout_ms, requires_json, last_agent
-- (last_agent: the agent whose attempt failed last, or '')

local offset = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', K_QUEUE, offset, offset + tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local j = redis.call('HMGET', k_job(id), 'kind', 'args', 'rank', 'timeout_ms',
    'requires', 'last_agent')
  if j[1] then
    out[#out + 1] = id
    for f = 1, 6 do out[#out + 1] = j[f] or '' end
  end
  -- A queue entry without its job is skipped here (this script is
  -- read-only); the audit reports it.
end
return out
