-- resign.lua: gives up the leadership lease, for a balancer that is
-- stopping, so a standby takes over at its next poll instead of after the
-- lease's TTL.
--
-- ARGV: prefix, token held
-- Deletes P:leader only while it still holds this token: a lease that
-- already lapsed and was taken belongs to its new holder.
-- Returns {'resigned'} or {'not_leader'}.

if redis.call('GET', K_LEADER) == ARGV[2] then
  redis.call('DEL', K_LEADER)
  return {'resigned'}
end
return {'not_leader'}
