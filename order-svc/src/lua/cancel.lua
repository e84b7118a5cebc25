-- Start cancelling an order: mark it CANCELLING and put OrderCancelled in the outbox, atomically.
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] per-status index prefix, KEYS[4] outbox stream
-- ARGV    now (ms), history entry (JSON), then the outbox entry's field/value pairs
-- Returns {1, 'CANCELLING'} when started, {0, status} when the order cannot be cancelled
-- (already FAILED, CANCELLING or CANCELLED), {0, ''} when there is no such order.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, ''}
end
if status ~= 'PLACED' and status ~= 'CONFIRMED' then
  return {0, status}
end
local id = redis.call('HGET', KEYS[1], 'order_id')
local created = redis.call('HGET', KEYS[1], 'created_at')
redis.call('HSET', KEYS[1], 'status', 'CANCELLING', 'updated_at', ARGV[1])
redis.call('ZREM', KEYS[3] .. status, id)
redis.call('ZADD', KEYS[3] .. 'CANCELLING', created, id)
redis.call('RPUSH', KEYS[2], ARGV[2])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(fields))
return {1, 'CANCELLING'}
