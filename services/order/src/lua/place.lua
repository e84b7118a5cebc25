-- Place an order: the order, its history, its index entries, its OrderPlaced in the outbox and,
-- with an Idempotency-Key, the key's record, all in one atomic step. A key already recorded
-- writes nothing and returns what it was first used for, so two requests with one key, however
-- they interleave, make one order.
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] index of all orders, KEYS[4] index of PLACED
-- orders, KEYS[5] outbox stream, KEYS[6] the Idempotency-Key's record (used only with a key),
-- KEYS[7] the decision deadlines (sorted set), KEYS[8] the owner's index of orders (sorted set;
-- used only for an order with an owner)
-- ARGV[1] the request as the key's record keeps it ('' without a key), ARGV[2] the idempotency
-- window (ms), ARGV[3] order id, ARGV[4] now (ms), ARGV[5] history entry (JSON), ARGV[6] the
-- order's decision deadline (ms; '' for none), ARGV[7] '1' if the order has an owner (its fields
-- are among the order's), else '', ARGV[8] n, the number of arguments that follow with the
-- order's field/value pairs, then the outbox entry's field/value pairs.
-- Returns {1, order id, request} when placed, {0, order id, request} when the key was already
-- recorded (that order, and the request it was first used for).
if ARGV[1] ~= '' then
  local seen = redis.call('HMGET', KEYS[6], 'order_id', 'request')
  if seen[1] then
    return {0, seen[1], seen[2] or ''}
  end
end
local n = tonumber(ARGV[8])
local order = {}
for i = 9, 8 + n do order[#order + 1] = ARGV[i] end
local entry = {}
for i = 9 + n, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(order))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[5], '*', unpack(entry))
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[6], ARGV[3])
end
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[4], ARGV[3])
end
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[6], 'order_id', ARGV[3], 'request', ARGV[1], 'status', '201', 'at', ARGV[4])
  redis.call('PEXPIRE', KEYS[6], ARGV[2])
end
return {1, ARGV[3], ARGV[1]}
