-- Set an item's available stock, keeping the books balanced, and write the stock events it
-- announces into the catalog's outbox, in one atomic step.
--
-- Stock conservation is checked as  initial = available + reserved - released,  so a manual
-- change of `available` moves `initial` by the same amount.
-- KEYS[1] stock hash, KEYS[2] initial hash, KEYS[3] the item's product hash, KEYS[4] the
-- catalog's outbox (stream); ARGV item, new available, now (ms), cause (a fresh UUID).
--
-- The outbox entry records the change (before, after, threshold); the catalog's relay turns it
-- into product.stock.updated, .low and .out (saga_domain::product::stock_events).
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('HINCRBY', KEYS[2], ARGV[1], new - old)
if new ~= old then
  local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
  local threshold = redis.call('HGET', KEYS[3], 'low_threshold') or '0'
  redis.call('XADD', KEYS[4], '*', 'kind', 'stock', 'item', ARGV[1], 'seq', seq,
    'at', ARGV[3], 'cause', ARGV[4], 'before', old, 'after', new, 'low_threshold', threshold)
end
return old
