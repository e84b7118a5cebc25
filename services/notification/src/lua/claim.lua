-- Claim the right to send the notification for one (order, outcome).
--
-- KEYS[1] the notification's record: absent, 'pending:<owner>:<ms>' while being sent, or 'sent'
-- KEYS[2] the record of the notification that would make this one no news (used only when
--         ARGV[4] is '1': saga_domain::order::NotificationOutcome::superseded_by)
-- ARGV    owner (this attempt), now (ms), lease (ms), '1' if KEYS[2] applies
--
-- Returns 'claimed' (go ahead), 'sent' (already done: a duplicate), 'superseded' (the customer
-- was told something that makes this no news) or 'busy' (someone else is sending it right now).
-- A claim older than the lease belonged to a sender that died: taken over.
local v = redis.call('GET', KEYS[1])
if v ~= 'sent' and ARGV[4] == '1' and redis.call('GET', KEYS[2]) == 'sent' then
  return 'superseded'
end
if not v then
  redis.call('SET', KEYS[1], 'pending:' .. ARGV[1] .. ':' .. ARGV[2])
  return 'claimed'
end
if v == 'sent' then
  return 'sent'
end
local owner, at = string.match(v, '^pending:(.*):(%d+)$')
if owner == ARGV[1] or (at and tonumber(ARGV[2]) - tonumber(at) > tonumber(ARGV[3])) then
  redis.call('SET', KEYS[1], 'pending:' .. ARGV[1] .. ':' .. ARGV[2])
  return 'claimed'
end
return 'busy'
