-- retry.lua: an operator re-queues a dead-lettered or cancelled job.
--
-- ARGV: prefix, leader token, now_ms, job_id
-- The attempt counter keeps counting, so fencing tokens stay unique; the
-- job gets max_attempts fresh attempts from here (attempt_base) at its
-- submitted priority.
-- Returns {'queued'}, {'unknown_job'} or {'not_retryable', state}.

require_leader()
local id = ARGV[4]
local key = k_job(id)
local j = redis.call('HMGET', key, 'state', 'attempt', 'submitted_rank')
if not j[1] then
  return {'unknown_job'}
end
if j[1] ~= 'dead' and j[1] ~= 'cancelled' then
  return {'not_retryable', j[1]}
end
local rank = tonumber(j[3])
redis.call('HSET', key, 'state', 'queued', 'attempt_base', j[2],
  'rank', rank, 'agent', '', 'error', '', 'finished_at', '',
  'unschedulable_reason', '', 'unschedulable_since', '',
  'requeued_at', ARGV[3])
redis.call('ZREM', K_DEAD, id)
-- Queued again: no longer finished, so no longer due for deletion.
redis.call('PERSIST', key)
push_queue(id, rank)
stat('retried_by_operator')
return {'queued'}
