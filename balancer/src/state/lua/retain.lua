-- retain.lua: how long finished jobs are kept, applied by the sweeper.
--
-- ARGV: prefix, leader token, now_ms, retain_ms ('0': forever)
-- Records the leader's retention in P:config, where the scripts that
-- finish a job read it (retire, in lib.lua), and drops dead letters older
-- than it from P:dead, as their job hashes expire. Returns the number of
-- dead letters dropped.

require_leader()
local now = tonumber(ARGV[3])
local retain = tonumber(ARGV[4]) or 0
if redis.call('HGET', K_CONFIG, 'retain_finished_ms') ~= tostring(retain) then
  redis.call('HSET', K_CONFIG, 'retain_finished_ms', retain)
end
if retain <= 0 then
  return 0
end
return redis.call('ZREMRANGEBYSCORE', K_DEAD, '-inf', '(' .. (now - retain))
