-- enqueue.lua: adds a batch of validated jobs to the queue.
--
-- ARGV: prefix, leader token, now_ms, then 7 fields per job:
--   id, kind, args_json, rank, timeout_ms ('' when the producer gave none),
--   max_attempts, requires_json
-- Returns one status per job ('queued' or 'duplicate': a job id seen before
-- is never enqueued twice), then the number of queued jobs (parked ones
-- included).

require_leader()
local now = ARGV[3]
local out = {}
for i = 4, #ARGV, 7 do
  local id = ARGV[i]
  local key = k_job(id)
  if redis.call('EXISTS', key) == 1 then
    stat('duplicates')
    out[#out + 1] = 'duplicate'
  else
    local rank = tonumber(ARGV[i + 3])
    -- push_queue's work, with the sequence number in the one HSET.
    local seq = redis.call('INCR', K_SEQ)
    redis.call('HSET', key,
      'id', id, 'kind', ARGV[i + 1], 'args', ARGV[i + 2],
      'rank', rank, 'submitted_rank', rank,
      'timeout_ms', ARGV[i + 4], 'max_attempts', ARGV[i + 5],
      'requires', ARGV[i + 6],
      'state', 'queued', 'attempt', 0, 'agent', '',
      'submitted_at', now, 'history', '[]', 'seq', seq)
    redis.call('ZADD', K_QUEUE, queue_score(rank, seq), id)
    stat('submitted')
    out[#out + 1] = 'queued'
  end
end
out[#out + 1] = tostring(redis.call('ZCARD', K_QUEUE) + redis.call('ZCARD', K_PARKED))
return out
