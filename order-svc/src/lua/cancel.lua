-- Start cancelling an order: a compare-and-set over the moves it is given, and OrderCancelled put
-- in the outbox, atomically.
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] per-status index prefix, KEYS[4] outbox stream
-- ARGV[1] now (ms), ARGV[2] history entry (JSON), ARGV[3] n, the number of arguments that follow
-- with the allowed moves as from, to pairs (computed in Rust by shared::domain::OrderStatus),
-- then the outbox entry's field/value pairs.
-- Returns {1, status after} when started, {0, status} when the order cannot be cancelled
-- (already FAILED, CANCELLING or CANCELLED), {0, ''} when there is no such order.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, ''}
end
local n = tonumber(ARGV[3])
local next_status = nil
for i = 4, 3 + n - 1, 2 do
  if ARGV[i] == status then
    next_status = ARGV[i + 1]
    break
  end
end
if not next_status then
  return {0, status}
end
local id = redis.call('HGET', KEYS[1], 'order_id')
local created = redis.call('HGET', KEYS[1], 'created_at')
redis.call('HSET', KEYS[1], 'status', next_status, 'updated_at', ARGV[1])
redis.call('ZREM', KEYS[3] .. status, id)
redis.call('ZADD', KEYS[3] .. next_status, created, id)
redis.call('RPUSH', KEYS[2], ARGV[2])
local fields = {}
for i = 4 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(fields))
return {1, next_status}
