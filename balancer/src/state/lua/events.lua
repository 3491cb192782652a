-- events.lua: applies a batch of agent events in stream order, one handler
-- per event type (the files concatenated before this one).
--
-- ARGV: prefix, leader token, now_ms, job_timeout_buffer,
--   heartbeat_timeout_ms, now_us (for latency figures only), then per
--   event:
--   type, field_count, fields...
-- Returns one reply table per event, in order.

require_leader()
local now = tonumber(ARGV[3])
local buffer = tonumber(ARGV[4])
local heartbeat_timeout = tonumber(ARGV[5])
local now_us = ARGV[6]
local out = {}
local i = 7
while i <= #ARGV do
  local kind, n, a = ARGV[i], tonumber(ARGV[i + 1]), i + 2
  local r
  if kind == 'started' then
    r = on_started(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), now, buffer, now_us)
  elseif kind == 'completed' then
    r = on_completed(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3],
      tonumber(ARGV[a + 4]), now)
  elseif kind == 'failed' then
    -- The sixth field, handed_back, is optional.
    r = on_failed(ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3],
      tonumber(ARGV[a + 4]), now, n >= 6 and ARGV[a + 5] or '0')
  elseif kind == 'register' then
    r = on_register(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], now)
  elseif kind == 'heartbeat' then
    r = on_heartbeat(ARGV[a], ARGV[a + 1], ARGV[a + 2], a + 3, a + n - 1, now,
      heartbeat_timeout)
  else
    r = {'unknown_event'}
  end
  out[#out + 1] = r
  i = a + n
end
return out
