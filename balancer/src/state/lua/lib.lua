-- lib.lua: key names and helpers shared by every fleet script.
--
-- The Rust side prepends this file to each script (concat! of include_str!),
-- so the helpers are plain locals. ARGV[1] is always the key prefix, e.g.
-- "fleet:{fleet}"; the names below must match protocol/src/keys.rs.
-- Every key shares the prefix's hash tag, so a script touches one slot.
-- ARGV[2] is the caller's leadership token in every script that changes
-- state: require_leader() refuses a balancer that no longer leads, so a
-- deposed leader can never overwrite its successor's work.

local P = ARGV[1]
local K_QUEUE = P .. ':queue'
local K_LEASES = P .. ':leases'
local K_SEQ = P .. ':seq'
local K_AGENTS = P .. ':agents'
local K_STATS = P .. ':stats'
local K_LEADER = P .. ':leader'
local K_SEEN = P .. ':agents:seen'
local K_DEAD = P .. ':dead'
local K_PARKED = P .. ':parked'
local K_CONFIG = P .. ':config'

-- Aborts the script unless ARGV[2] is the current leadership token.
local function require_leader()
  if redis.call('GET', K_LEADER) ~= ARGV[2] then
    error({err = 'NOTLEADER this balancer does not hold the leadership lease'})
  end
end

local function k_job(id) return P .. ':job:' .. id end
local function k_agent(id) return P .. ':agent:' .. id end
local function k_agent_jobs(id) return P .. ':agent:' .. id .. ':jobs' end
local function k_agent_gpus(id) return P .. ':agent:' .. id .. ':gpus' end
local function k_agent_perf(id) return P .. ':agent:' .. id .. ':perf' end

-- Folds one finished attempt into the agent's moving averages for the
-- job's kind: success always, run time when it ran (duration_ms > 0).
local PERF_ALPHA = 0.2
local function record_perf_kind(agent, kind, ok, duration_ms)
  if not kind or agent == '' then return end
  local key = k_agent_perf(agent)
  local p = redis.call('HMGET', key, kind .. '|ms', kind .. '|ok', kind .. '|n')
  local n = tonumber(p[3]) or 0
  local ok_avg = tonumber(p[2])
  local x = ok and 1 or 0
  ok_avg = ok_avg and (ok_avg + PERF_ALPHA * (x - ok_avg)) or x
  local fields = {kind .. '|ok', tostring(ok_avg), kind .. '|n', n + 1}
  if duration_ms and duration_ms > 0 then
    local ms = tonumber(p[1])
    ms = ms and (ms + PERF_ALPHA * (duration_ms - ms)) or duration_ms
    fields[#fields + 1] = kind .. '|ms'
    fields[#fields + 1] = tostring(ms)
  end
  redis.call('HSET', key, unpack(fields))
end

local function record_perf(agent, id, ok, duration_ms)
  record_perf_kind(agent, redis.call('HGET', k_job(id), 'kind'), ok, duration_ms)
end

-- Queue order is (priority, arrival): higher rank first, then lower seq.
-- 2^44 arrivals per class is far beyond any real queue's lifetime, and the
-- largest score stays below 2^53, so doubles hold it exactly.
local PRIO_SPAN = 17592186044416

-- A job's run-time limit when neither it nor its lease names one (the
-- protocol's default, defaults::JOB_TIMEOUT).
local DEFAULT_TIMEOUT_MS = 300000

-- Counter increments are summed here and written once per script call by
-- flush_stats (the Rust side calls it after every script's body), so a
-- batch of a thousand jobs costs one HINCRBY per counter, not a thousand.
local STAT_DELTAS = {}
local function stat(field, n)
  STAT_DELTAS[field] = (STAT_DELTAS[field] or 0) + (n or 1)
end

local function flush_stats()
  for field, n in pairs(STAT_DELTAS) do
    redis.call('HINCRBY', K_STATS, field, n)
  end
  STAT_DELTAS = {}
end

-- The refusal of an event from `agent` about `attempt` of a job whose
-- lease is (`job_agent`, `job_attempt`): {'stale', reason}, the reason
-- telling a forged or misrouted event (not_lease_holder) from a late one
-- (stale_attempt, not_live), so each is counted apart.
local function refuse(job_agent, job_attempt, agent, attempt)
  stat('stale_events')
  if job_agent ~= agent then return {'stale', 'not_lease_holder'} end
  if tonumber(job_attempt) ~= attempt then return {'stale', 'stale_attempt'} end
  return {'stale', 'not_live'}
end

local function queue_score(rank, seq)
  return string.format('%d', (3 - rank) * PRIO_SPAN + seq)
end

-- Puts a job at the back of its priority class.
local function push_queue(id, rank)
  local seq = redis.call('INCR', K_SEQ)
  redis.call('HSET', k_job(id), 'seq', seq)
  redis.call('ZADD', K_QUEUE, queue_score(rank, seq), id)
end

-- Splits "0,2,3" into {'0', '2', '3'}.
local function split_csv(csv)
  local out = {}
  if csv then
    for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  end
  return out
end

-- Frees the GPUs (`gpus`: "0,2") that job `id` holds on `agent`.
local function free_gpus(agent, id, gpus)
  for _, index in ipairs(split_csv(gpus)) do
    if redis.call('HGET', k_agent_gpus(agent), index) == id then
      redis.call('HDEL', k_agent_gpus(agent), index)
    end
  end
end

-- Drops a job's lease from the lease index and from its agent's set, and
-- frees the GPUs it held there.
local function release_lease(id, agent)
  redis.call('ZREM', K_LEASES, id)
  if agent and agent ~= '' then
    redis.call('SREM', k_agent_jobs(agent), id)
    free_gpus(agent, id, redis.call('HGET', k_job(id), 'gpus'))
  end
  redis.call('HSET', k_job(id), 'gpus', '')
end

-- Why `agent` cannot take one more lease using GPUs `devices` now, or
-- nil if it can: it must be alive, not draining or stopping, below slots + prefetch
-- (invariant 3), and each device must be free. Also returns the agent's
-- slots and how many leases it holds, which the caller needs next.
local function lease_refusal(agent, devices)
  local a = redis.call('HMGET', k_agent(agent), 'state', 'slots', 'draining', 'prefetch',
    'stopping')
  if a[1] ~= 'alive' or a[3] == '1' or a[5] == '1' then
    return 'agent_unavailable'
  end
  local slots = tonumber(a[2])
  local held = redis.call('SCARD', k_agent_jobs(agent))
  if held >= slots + (tonumber(a[4]) or 0) then
    return 'agent_full'
  end
  for _, index in ipairs(devices) do
    if redis.call('HEXISTS', k_agent_gpus(agent), index) == 1 then
      return 'gpu_busy'
    end
  end
  return nil, slots, held
end

-- Leases a queued (or just released) job to `agent` as `attempt`, holding
-- `devices`, until `deadline`; once started it may run `timeout_ms`.
-- `now_us` (microseconds, for latency figures only) may be nil.
local function lease_to(id, agent, attempt, gpus, devices, timeout_ms, now, deadline, now_us)
  redis.call('HSET', k_job(id), 'state', 'assigned', 'attempt', attempt,
    'agent', agent, 'assigned_at', now, 'started_at', '', 'gpus', gpus,
    'lease_timeout_ms', timeout_ms,
    'unschedulable_reason', '', 'unschedulable_since', '',
    'assigned_us', now_us or '', 'started_us', '')
  for _, index in ipairs(devices) do
    redis.call('HSET', k_agent_gpus(agent), index, id)
  end
  redis.call('SADD', k_agent_jobs(agent), id)
  redis.call('ZADD', K_LEASES, deadline, id)
end

-- A job that just finished (succeeded, dead, cancelled) is deleted by
-- Redis after the leader's retention (P:config, set by retain.lua; none:
-- kept forever). Its id may then be used again.
local function retire(id)
  local ms = tonumber(redis.call('HGET', K_CONFIG, 'retain_finished_ms'))
  if ms and ms > 0 then
    redis.call('PEXPIRE', k_job(id), ms)
  end
end

-- Ends a job as dead: terminal, listed among the dead letters.
local function bury(id, err, now)
  redis.call('HSET', k_job(id), 'state', 'dead', 'error', err, 'finished_at', now)
  redis.call('ZADD', K_DEAD, now, id)
  retire(id)
  stat('dead')
end

-- The history `raw` (a JSON array, or empty) with one more attempt record.
local function append_history(raw, record)
  local list = {}
  if raw and raw ~= '' and raw ~= '[]' then list = cjson.decode(raw) end
  list[#list + 1] = record
  return cjson.encode(list)
end

-- Appends one attempt record to the job's history and returns the new
-- history as JSON.
local function push_history(id, record)
  local encoded = append_history(redis.call('HGET', k_job(id), 'history'), record)
  redis.call('HSET', k_job(id), 'history', encoded)
  return encoded
end

-- An attempt lost to the infrastructure (its agent died, never confirmed
-- the start, or stopped and handed the job back) is spared from the job's
-- max_attempts, up to INFRA_SPARES times per job: under churn or a rolling
-- restart a job can meet several such agents through no fault of its own.
-- Retries stay bounded, by max_attempts + INFRA_SPARES.
local INFRA_SPARES = 2
local function spare(id)
  local spared = tonumber(redis.call('HGET', k_job(id), 'infra_spared')) or 0
  if spared < INFRA_SPARES then
    redis.call('HINCRBY', k_job(id), 'attempt_base', 1)
    redis.call('HSET', k_job(id), 'infra_spared', spared + 1)
  end
end

-- Ends the current attempt of a leased job as failed: back to the queue one
-- priority class up, or dead-lettered once max_attempts is spent (counted
-- from attempt_base, which an operator's retry moves forward).
-- `not_the_agents` (optional): the agent handed the job back as it
-- stopped, so the failure is left out of its success rate and history.
-- Returns {'requeued'} or {'dead', history}.
local function fail_attempt(id, agent, attempt, err, duration_ms, now, not_the_agents)
  local key = k_job(id)
  release_lease(id, agent)
  local history = push_history(id, {
    attempt = attempt, agent_id = agent, outcome = 'failed',
    error = err, duration_ms = duration_ms,
  })
  stat('failed_attempts')
  if not not_the_agents then
    redis.call('HINCRBY', k_agent(agent), 'failed', 1)
    record_perf(agent, id, false, duration_ms)
  end
  local job = redis.call('HMGET', key, 'max_attempts', 'rank', 'attempt_base')
  if attempt - (tonumber(job[3]) or 0) >= tonumber(job[1]) then
    -- The agent field stays, so a redelivered copy of this failure is
    -- recognised as the same event.
    redis.call('HSET', key, 'last_agent', agent)
    bury(id, err, now)
    return {'dead', history}
  end
  local rank = math.min(tonumber(job[2]) + 1, 3)
  redis.call('HSET', key, 'state', 'queued', 'rank', rank, 'agent', '',
    'error', err, 'last_agent', agent)
  push_queue(id, rank)
  stat('retried')
  return {'requeued'}
end
