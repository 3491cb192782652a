-- lead.lua: acquires or renews the balancer leadership lease.
--
-- ARGV: prefix, token held ('' if none), candidate id, ttl_ms
-- The lease is P:leader = "<candidate id>:<epoch>", with a TTL. Each new
-- acquisition takes a fresh epoch from P:leader:epoch, so every
-- leadership has a unique token: the fencing token that require_leader()
-- checks in every state-changing script.
-- Returns {'leader', token} or {'follower', current holder's token}.

local token, id, ttl = ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('GET', K_LEADER)
if current and current == token then
  redis.call('PEXPIRE', K_LEADER, ttl)
  return {'leader', token}
end
if token ~= '' then
  -- A renewal of a lease that lapsed (or was taken): that leadership is
  -- over. The caller steps down and competes afresh with an empty token.
  return {'follower', current or ''}
end
if not current then
  local epoch = redis.call('INCR', K_LEADER .. ':epoch')
  local fresh = id .. ':' .. epoch
  redis.call('SET', K_LEADER, fresh, 'PX', ttl)
  return {'leader', fresh}
end
return {'follower', current}
