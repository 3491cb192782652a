-- expire.lua: the sweeper's pass over silent agents and overdue leases.
--
-- ARGV: prefix, leader token, now_ms, heartbeat_timeout_ms, limit,
--   check_agents ('1' or '0'), check_leases ('1' or '0'),
--   unschedulable_timeout_ms
-- A job parked as unschedulable for longer than its timeout is
-- dead-lettered with its reason.
-- (the caller turns a check off while it has not watched the fleet for
-- long enough to judge; see balancer/src/watch.rs)
-- An alive agent not heard from for heartbeat_timeout is declared dead and
-- every lease it holds fails at once. A lease past its deadline fails too:
-- an assigned job whose agent never confirmed the start (accept timeout),
-- or a running job past timeout x buffer, which its agent is also told to
-- cancel. Each failed attempt is re-queued or, with its attempts spent,
-- dead-lettered (fail_attempt); the first two attempts a job loses to a
-- dead or silent agent do not count (spare, below). At most `limit` agents and `limit` leases
-- per call; the caller calls again while a call hits the limit.
-- Returns 4 fields per outcome: kind, job_id or agent_id, agent_id, extra:
--   'agent_lost', agent, agent, ''
--   'requeued', job, agent, error
--   'dead', job, agent, history
--   'cancel', job, agent, attempt
--   'unschedulable', job, error, history

require_leader()
local now = tonumber(ARGV[3])
local timeout = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local check_agents = ARGV[6] == '1'
local check_leases = ARGV[7] == '1'
local unschedulable_timeout = tonumber(ARGV[8])
local out = {}
local function emit(kind, id, agent, extra)
  out[#out + 1] = kind
  out[#out + 1] = id
  out[#out + 1] = agent
  out[#out + 1] = extra
end
local function fail(id, agent, attempt, err)
  local r = fail_attempt(id, agent, attempt, err, 0, now)
  emit(r[1], id, agent, r[2] or err)
end

local silent = {}
if check_agents then
  silent = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf',
    string.format('%d', now - timeout), 'LIMIT', 0, limit)
end
for _, agent in ipairs(silent) do
  redis.call('ZREM', K_SEEN, agent)
  if redis.call('HGET', k_agent(agent), 'state') == 'alive' then
    redis.call('HSET', k_agent(agent), 'state', 'dead', 'died_at', now)
    stat('agents_lost')
    emit('agent_lost', agent, agent, '')
    local err = 'agent ' .. agent .. ' lost: no heartbeat for ' .. timeout .. ' ms'
    for _, id in ipairs(redis.call('SMEMBERS', k_agent_jobs(agent))) do
      local attempt = tonumber(redis.call('HGET', k_job(id), 'attempt'))
      if attempt then
        spare(id)
        fail(id, agent, attempt, err)
      else
        redis.call('SREM', k_agent_jobs(agent), id)
      end
    end
  end
end

local overdue = {}
if check_leases then
  overdue = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf',
    string.format('%d', now), 'LIMIT', 0, limit)
end
for _, id in ipairs(overdue) do
  local j = redis.call('HMGET', k_job(id), 'state', 'attempt', 'agent', 'lease_timeout_ms')
  local attempt = tonumber(j[2])
  if j[1] == 'assigned' then
    stat('accept_timeouts')
    spare(id)
    fail(id, j[3], attempt, 'not started within the accept timeout')
  elseif j[1] == 'running' then
    stat('job_timeouts')
    emit('cancel', id, j[3], tostring(attempt))
    fail(id, j[3], attempt, 'timed out: still running past its timeout of '
      .. (j[4] or '?') .. ' ms')
  else
    -- A lease entry whose job holds no lease cannot expire anything.
    redis.call('ZREM', K_LEASES, id)
  end
end
local stuck = redis.call('ZRANGEBYSCORE', K_PARKED, '-inf',
  string.format('%d', now - unschedulable_timeout), 'LIMIT', 0, limit)
for _, id in ipairs(stuck) do
  redis.call('ZREM', K_PARKED, id)
  local key = k_job(id)
  local j = redis.call('HMGET', key, 'state', 'unschedulable_reason', 'history')
  if j[1] == 'queued' then
    local err = 'unschedulable for ' .. unschedulable_timeout .. ' ms: ' .. (j[2] or '')
    bury(id, err, now)
    emit('unschedulable', id, err, j[3] or '[]')
  end
end
return out
