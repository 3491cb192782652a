-- enqueue.lua: admits a batch of validated jobs: each is leased at once to
-- the agent the intake chose for it, or else queued.
--
-- ARGV: prefix, leader token, now_ms, lease_deadline_ms,
--   prefetch_deadline_ms, now_us (for latency figures only), then 10
--   fields per job:
--   id, kind, args_json, rank, timeout_ms ('' when the producer gave none),
--   max_attempts, requires_json,
--   agent ('' to queue it), gpus ("0,1" or ''), lease timeout_ms
-- A chosen agent gets the job only while the queue is empty (a new job
-- never overtakes a waiting one, nor one of this call queued before it:
-- the jobs come in queue order) and only if it can take one more lease
-- (lease_refusal, as assign.lua checks); otherwise the job is queued and
-- the scheduler places it. Skipping the queue saves the scheduler's two
-- round trips (peek, assign) on an idle fleet.
-- Returns one status per job: 'leased' (attempt 1), 'queued', or
-- 'duplicate' (a job id seen before is never admitted twice); then the
-- number of queued jobs (parked ones included).

require_leader()
local now = ARGV[3]
local deadline, prefetch_deadline, now_us = ARGV[4], ARGV[5], ARGV[6]
local backlog = redis.call('ZCARD', K_QUEUE)
local out = {}
for i = 7, #ARGV, 10 do
  local id = ARGV[i]
  local key = k_job(id)
  if redis.call('EXISTS', key) == 1 then
    stat('duplicates')
    out[#out + 1] = 'duplicate'
  else
    local rank = tonumber(ARGV[i + 3])
    local agent, gpus = ARGV[i + 7], ARGV[i + 8]
    local devices = split_csv(gpus)
    local refusal, slots, held = 'not_placed'
    if agent ~= '' and backlog == 0 then
      refusal, slots, held = lease_refusal(agent, devices)
      -- Queued now (the intake's view of that agent was stale): the jobs
      -- after it in this call, which the intake sends in queue order,
      -- must not overtake it.
      if refusal then backlog = 1 end
    end
    -- The queued path's sequence number goes into the one HSET.
    local seq = ''
    if refusal then seq = redis.call('INCR', K_SEQ) end
    redis.call('HSET', key,
      'id', id, 'kind', ARGV[i + 1], 'args', ARGV[i + 2],
      'rank', rank, 'submitted_rank', rank,
      'timeout_ms', ARGV[i + 4], 'max_attempts', ARGV[i + 5],
      'requires', ARGV[i + 6],
      'state', 'queued', 'attempt', 0, 'agent', '',
      'submitted_at', now, 'history', '[]', 'seq', seq)
    stat('submitted')
    if refusal then
      redis.call('ZADD', K_QUEUE, queue_score(rank, seq), id)
      out[#out + 1] = 'queued'
    else
      local until_ms = deadline
      if held >= slots then until_ms = prefetch_deadline end
      lease_to(id, agent, 1, gpus, devices, ARGV[i + 9], now, until_ms, now_us)
      stat('assigned')
      stat('leased_at_intake')
      out[#out + 1] = 'leased'
    end
  end
end
out[#out + 1] = tostring(redis.call('ZCARD', K_QUEUE) + redis.call('ZCARD', K_PARKED))
return out
