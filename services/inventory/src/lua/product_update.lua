-- Change (or add) one product and write what it announces into the catalog's outbox, in one
-- atomic step: the change is never without its events, and no event leaves before the change
-- is in Redis (the catalog's relay publishes the outbox with confirms).
--
-- KEYS[1] the product's hash, KEYS[2] the set of products, KEYS[3] stock: item -> available,
-- KEYS[4] the catalog's outbox (stream)
-- ARGV    item, name, unit_price, currency, low_threshold (each '' when not asked to change),
--         now (ms), cause (a fresh UUID: the events' ids derive from it), the default currency
--         and the default low threshold (percent of the stock) of a product being added
--
-- Returns {verdict, name, unit_price, currency, low_threshold, stock, seq}: verdict 'added',
-- 'changed', 'unchanged' (nothing written, nothing announced), or {'incomplete'} for an item
-- that is no product yet and lacks a name or a unit price.
local item, now, cause = ARGV[1], ARGV[6], ARGV[7]
local old = redis.call('HMGET', KEYS[1], 'name', 'unit_price', 'currency', 'low_threshold')
local exists = old[1] ~= false
if not exists and (ARGV[2] == '' or ARGV[3] == '') then
  return {'incomplete'}
end
local stock = tonumber(redis.call('HGET', KEYS[3], item) or '0')
local function pick(asked, before, default)
  if asked ~= '' then return asked end
  if before then return before end
  return default
end
local default_threshold = tostring(math.ceil(stock * tonumber(ARGV[9]) / 100))
local name = pick(ARGV[2], old[1], '')
local price = pick(ARGV[3], old[2], '')
local currency = pick(ARGV[4], old[3], ARGV[8])
local threshold = pick(ARGV[5], old[4], default_threshold)

local info_changed = not exists or name ~= old[1] or threshold ~= old[4]
local price_changed = exists and (price ~= old[2] or currency ~= old[3])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if not (info_changed or price_changed) then
  return {'unchanged', name, price, currency, threshold, stock, seq}
end
seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'name', name, 'unit_price', price, 'currency', currency,
  'low_threshold', threshold)
redis.call('SADD', KEYS[2], item)
if price_changed then
  redis.call('XADD', KEYS[4], '*', 'kind', 'price', 'item', item, 'seq', seq, 'at', now,
    'cause', cause, 'name', name, 'unit_price', price, 'currency', currency,
    'old_unit_price', old[2], 'old_currency', old[3])
end
if info_changed then
  redis.call('XADD', KEYS[4], '*', 'kind', 'snapshot', 'item', item, 'seq', seq, 'at', now,
    'cause', cause, 'name', name, 'unit_price', price, 'currency', currency,
    'stock', stock, 'low_threshold', threshold)
end
local verdict = 'changed'
if not exists then verdict = 'added' end
return {verdict, name, price, currency, threshold, stock, seq}
