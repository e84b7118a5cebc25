-- Apply one product event to order-svc's replica of the catalog, in one atomic step, only if it
-- is newer than what the replica holds: events arrive late, twice or out of order, and each
-- carries its product's seq (higher is newer). Two parts of a product are kept apart, each with
-- the seq and `at` of what was last applied to it: its info (name, price, currency, threshold:
-- from snapshots and price changes) and its stock (from snapshots and stock updates). So a
-- stock update that overtook a price change cannot hide the price change, and the reverse.
--
-- KEYS[1] the product's replica hash, KEYS[2] the set of items the replica knows
-- ARGV    kind (snapshot | price | stock), item, seq, at (ms, when inventory said it), now (ms),
--         name, unit_price, currency, low_threshold, stock ('' where the kind has none)
--
-- Returns 1 if anything changed, 0 if the event was not newer than what the replica holds.
local kind, item, seq, at, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local held = redis.call('HMGET', KEYS[1], 'info_seq', 'stock_seq')
local info_seq, stock_seq = tonumber(held[1]) or 0, tonumber(held[2]) or 0
local changed = false
if (kind == 'snapshot' or kind == 'price') and seq > info_seq then
  redis.call('HSET', KEYS[1], 'name', ARGV[6], 'unit_price', ARGV[7], 'currency', ARGV[8],
    'info_seq', seq, 'info_at', at)
  if kind == 'snapshot' then
    redis.call('HSET', KEYS[1], 'low_threshold', ARGV[9])
  end
  changed = true
end
if (kind == 'snapshot' or kind == 'stock') and seq > stock_seq then
  redis.call('HSET', KEYS[1], 'stock', ARGV[10], 'stock_seq', seq, 'stock_at', at)
  changed = true
end
if changed then
  redis.call('HSET', KEYS[1], 'updated_at', now)
  redis.call('SADD', KEYS[2], item)
  return 1
end
return 0
