-- Compensate an OrderCancelled in one atomic step: give back exactly what was reserved, once,
-- and schedule the record's compaction again (its release is news a duplicate may ask about).
--
-- KEYS[1] reservation record of this order (hash)
-- KEYS[2] stock: item -> available (hash)
-- KEYS[3] released totals: item -> units ever released (hash)
-- KEYS[4] compaction schedule: order id -> due ms (sorted set)
-- KEYS[5] archive schedule: order id -> due ms (sorted set)
-- ARGV    event_id (used only if this is the first release), now (ms), order id, retention (ms),
--         then the states' names: reserved, released (ReservationState::as_str)
--
-- Returns {is_new (1|0), flat record}. After this the record's state is 'released' and
-- 'released_qty' says how many units went back (0 if nothing had been reserved): every line's,
-- of a lab order's `item` and `qty` or of the `lines` of an order of several. A compacted record
-- still has them, so a CONFIRMED order cancelled after the compaction gets its stock back.
local RESERVED, RELEASED = ARGV[5], ARGV[6]
local state = redis.call('HGET', KEYS[1], 'state')
if state == RELEASED then
  return {0, redis.call('HGETALL', KEYS[1])}
end

local released = 0
if state == RESERVED then
  local r = redis.call('HMGET', KEYS[1], 'item', 'qty', 'lines')
  local lines
  if r[3] and r[3] ~= '' then
    lines = cjson.decode(r[3])
  else
    lines = {{item = r[1], qty = tonumber(r[2])}}
  end
  for _, line in ipairs(lines) do
    redis.call('HINCRBY', KEYS[2], line.item, line.qty)
    redis.call('HINCRBY', KEYS[3], line.item, line.qty)
    released = released + line.qty
  end
end
-- No record yet means the cancel overtook its OrderPlaced: this tombstone makes the late
-- OrderPlaced a duplicate, so it can never reserve stock for a cancelled order.
redis.call('HSET', KEYS[1], 'state', RELEASED, 'released_qty', released,
  'release_event_id', ARGV[1], 'released_at', ARGV[2])
-- A compacted record being released starts its retention again: until then a duplicate
-- OrderCancelled re-announces this release with its event id.
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + tonumber(ARGV[4]), ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
return {1, redis.call('HGETALL', KEYS[1])}
