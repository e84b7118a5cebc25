-- Compact a finished order whose retention is over: its record, timeline and DLQ hops go, it
-- leaves the indexes, and a tombstone says what it was, for the dedupe window, so that
-- `GET /order/{id}` can answer "expired" rather than "unknown".
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] DLQ hops list, KEYS[4] index of all orders,
-- KEYS[5] per-status index prefix, KEYS[6] expiry (sorted set), KEYS[7] the tombstone,
-- KEYS[8] per-owner index prefix (an owned order leaves its owner's index too; its tombstone
-- keeps the owner's id, so that only the owner is told "expired")
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] how long the tombstone is kept (ms),
-- ARGV[4..] the finished statuses (computed in Rust: saga_domain::order::OrderStatus::FINISHED).
-- Returns 1 when compacted, 0 when not due (or no longer finished: then it leaves the expiry set).
local due = redis.call('ZSCORE', KEYS[6], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then
  return 0
end
local order = redis.call('HMGET', KEYS[1], 'status', 'updated_at', 'owner_id')
local finished = false
for i = 4, #ARGV do
  if ARGV[i] == order[1] then finished = true end
end
redis.call('ZREM', KEYS[6], ARGV[1])
if not finished then
  return 0
end
local tombstone = cjson.encode({
  status = order[1],
  finished_at = tonumber(order[2]),
  expired_at = tonumber(ARGV[2]),
  owner_id = order[3] or nil,
})
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5] .. order[1], ARGV[1])
if order[3] then
  redis.call('ZREM', KEYS[8] .. order[3], ARGV[1])
end
redis.call('SET', KEYS[7], tombstone, 'PX', ARGV[3])
return 1
