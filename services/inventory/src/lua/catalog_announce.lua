-- Announce every product as it is now (`product.snapshot`), in one atomic step: each snapshot
-- is a consistent reading of the product and its stock, with a fresh seq, written into the
-- catalog's outbox. At every start of inventory-svc and on POST /products/announce: the way to
-- re-send the catalog to anyone who missed it.
--
-- KEYS[1] stock: item -> available, KEYS[2] the catalog's outbox (stream),
-- KEYS[2 + i] product i's hash
-- ARGV    now (ms), cause (a fresh UUID), then product i's item as ARGV[2 + i]
--
-- Returns how many products were announced (a member of the set whose hash is gone is not).
local now, cause = ARGV[1], ARGV[2]
local announced = 0
for i = 3, #KEYS do
  local item = ARGV[i]
  local p = redis.call('HMGET', KEYS[i], 'name', 'unit_price', 'currency', 'low_threshold')
  if p[1] then
    local seq = redis.call('HINCRBY', KEYS[i], 'seq', 1)
    local stock = redis.call('HGET', KEYS[1], item) or '0'
    redis.call('XADD', KEYS[2], '*', 'kind', 'snapshot', 'item', item, 'seq', seq, 'at', now,
      'cause', cause, 'name', p[1], 'unit_price', p[2], 'currency', p[3], 'stock', stock,
      'low_threshold', p[4])
    announced = announced + 1
  end
end
return announced
