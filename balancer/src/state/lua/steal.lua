-- steal.lua: moves not-yet-started leases from a backed-up agent to an
-- idle one.
--
-- ARGV: prefix, leader token, now_ms, lease_deadline_ms, then per move:
--   job_id, from_agent, attempt, to_agent, gpus, timeout_ms
-- A move happens only while the job is still assigned (not started) to
-- from_agent under that attempt, and to_agent can take it. The lease
-- moves with a new fencing token (attempt + 1), so anything the old
-- holder still reports is stale; a move does not use up one of the job's
-- attempts (attempt_base moves too). The caller tells the old holder to
-- drop it.
-- Returns one string per move: the new attempt, or the reason: moved_on,
-- agent_unavailable, agent_full, gpu_busy.

require_leader()
local now = ARGV[3]
local deadline = ARGV[4]
local out = {}
for i = 5, #ARGV, 6 do
  local id, from, attempt, to, gpus, timeout_ms = ARGV[i], ARGV[i + 1],
    tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local devices = split_csv(gpus)
  local j = redis.call('HMGET', k_job(id), 'state', 'agent', 'attempt', 'attempt_base')
  local refusal
  if j[1] ~= 'assigned' or j[2] ~= from or tonumber(j[3]) ~= attempt then
    refusal = 'moved_on'
  else
    refusal = lease_refusal(to, devices)
  end
  if refusal then
    out[#out + 1] = refusal
  else
    release_lease(id, from)
    push_history(id, {
      attempt = attempt, agent_id = from, outcome = 'moved',
      error = 'not started; moved to ' .. to, duration_ms = 0,
    })
    redis.call('HSET', k_job(id), 'attempt_base', (tonumber(j[4]) or 0) + 1)
    lease_to(id, to, attempt + 1, gpus, devices, timeout_ms, now, deadline)
    stat('stolen')
    out[#out + 1] = tostring(attempt + 1)
  end
end
return out
