-- Seed the catalog: add each product that is not one yet, in one atomic step. A product that
-- exists is kept as it is (restarts keep prices set by hand), like the stock's seeding.
--
-- KEYS[1] the set of products, KEYS[1 + i] product i's hash
-- ARGV    five per product i: item, name, unit_price, currency, low_threshold
--
-- Returns how many products were added. No event: the start-up snapshot, right after, says it.
local added = 0
for i = 2, #KEYS do
  local a = (i - 2) * 5
  if redis.call('HEXISTS', KEYS[i], 'name') == 0 then
    redis.call('HSET', KEYS[i], 'name', ARGV[a + 2], 'unit_price', ARGV[a + 3],
      'currency', ARGV[a + 4], 'low_threshold', ARGV[a + 5])
    redis.call('SADD', KEYS[1], ARGV[a + 1])
    added = added + 1
  end
end
return added
