-- cancel.lua: an operator cancels a job that has not ended.
--
-- ARGV: prefix, leader token, now_ms, job_id
-- A queued job leaves the queue; a leased one loses its lease (the caller
-- tells the agent to stop). Either way the job ends 'cancelled', a
-- terminal state: a late completion from the agent is then stale.
-- Returns {'cancelled', previous_state, agent, attempt, history},
-- {'unknown_job'} or {'already_<state>'}.

require_leader()
local now = ARGV[3]
local id = ARGV[4]
local key = k_job(id)
local j = redis.call('HMGET', key, 'state', 'attempt', 'agent')
if not j[1] then
  return {'unknown_job'}
end
if j[1] == 'succeeded' or j[1] == 'dead' or j[1] == 'cancelled' then
  return {'already_' .. j[1]}
end
local history = redis.call('HGET', key, 'history')
if j[1] == 'queued' then
  redis.call('ZREM', K_QUEUE, id)
  redis.call('ZREM', K_PARKED, id)
else
  release_lease(id, j[3])
  history = push_history(id, {
    attempt = tonumber(j[2]), agent_id = j[3], outcome = 'cancelled',
    error = 'cancelled by operator', duration_ms = 0,
  })
end
redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now,
  'error', 'cancelled by operator')
retire(id)
stat('cancelled')
return {'cancelled', j[1], j[3] or '', j[2], history}
