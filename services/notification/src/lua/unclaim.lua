-- Give back a claim this sender holds, so that the next attempt (maybe another delivery of the
-- same message, back from the retry queue) may claim it at once instead of waiting for the lease.
--
-- KEYS[1] the notification's record
-- ARGV[1] owner
-- Returns 1 when the claim was ours and is gone, 0 otherwise (sent, or someone else's).
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #('pending:' .. ARGV[1] .. ':')) == 'pending:' .. ARGV[1] .. ':' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
