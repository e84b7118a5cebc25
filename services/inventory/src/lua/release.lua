-- Compensate an OrderCancelled in one atomic step: give back exactly what was reserved, once.
--
-- KEYS[1] reservation record of this order (hash)
-- KEYS[2] stock: item -> available (hash)
-- KEYS[3] released totals: item -> units ever released (hash)
-- ARGV    event_id (used only if this is the first release), now (ms)
--
-- Returns {is_new (1|0), flat record}. After this the record's state is 'released' and
-- 'released_qty' says what went back (0 if nothing had been reserved).
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'released' then
  return {0, redis.call('HGETALL', KEYS[1])}
end

local released = 0
if state == 'reserved' then
  local item = redis.call('HGET', KEYS[1], 'item')
  released = tonumber(redis.call('HGET', KEYS[1], 'qty'))
  redis.call('HINCRBY', KEYS[2], item, released)
  redis.call('HINCRBY', KEYS[3], item, released)
end
-- No record yet means the cancel overtook its OrderPlaced: this tombstone makes the late
-- OrderPlaced a duplicate, so it can never reserve stock for a cancelled order.
redis.call('HSET', KEYS[1], 'state', 'released', 'released_qty', released,
  'release_event_id', ARGV[1], 'released_at', ARGV[2])
return {1, redis.call('HGETALL', KEYS[1])}
