-- Start cancelling an order: a compare-and-set over the moves it is given, and OrderCancelled put
-- in the outbox, atomically; with an Idempotency-Key, the key's record too. A key already
-- recorded changes nothing and returns what it was first used for.
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] per-status index prefix, KEYS[4] outbox stream,
-- KEYS[5] the Idempotency-Key's record (used only with a key)
-- ARGV[1] now (ms), ARGV[2] history entry (JSON), ARGV[3] the request as the key's record keeps
-- it ('' without a key), ARGV[4] the idempotency window (ms), ARGV[5] n, the number of
-- arguments that follow with the allowed moves as from, to pairs (computed in Rust by
-- saga_domain::order::OrderStatus), then the outbox entry's field/value pairs.
-- Returns {1, status after, ''} when started, {0, status, ''} when the order cannot be cancelled
-- (already FAILED, CANCELLING or CANCELLED), {0, '', ''} when there is no such order, and
-- {2, order id, request} when the key was already recorded.
if ARGV[3] ~= '' then
  local seen = redis.call('HMGET', KEYS[5], 'order_id', 'request')
  if seen[1] then
    return {2, seen[1], seen[2] or ''}
  end
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, '', ''}
end
local n = tonumber(ARGV[5])
local next_status = nil
for i = 6, 5 + n - 1, 2 do
  if ARGV[i] == status then
    next_status = ARGV[i + 1]
    break
  end
end
if not next_status then
  return {0, status, ''}
end
local id = redis.call('HGET', KEYS[1], 'order_id')
local created = redis.call('HGET', KEYS[1], 'created_at')
redis.call('HSET', KEYS[1], 'status', next_status, 'updated_at', ARGV[1])
redis.call('ZREM', KEYS[3] .. status, id)
redis.call('ZADD', KEYS[3] .. next_status, created, id)
redis.call('RPUSH', KEYS[2], ARGV[2])
local fields = {}
for i = 6 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(fields))
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[5], 'order_id', id, 'request', ARGV[3], 'status', '202', 'at', ARGV[1])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
return {1, next_status, ''}
