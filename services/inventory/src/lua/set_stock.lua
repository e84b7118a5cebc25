-- Set an item's available stock, keeping the books balanced.
--
-- Stock conservation is checked as  initial = available + reserved - released,  so a manual
-- change of `available` moves `initial` by the same amount.
-- KEYS[1] stock hash, KEYS[2] initial hash; ARGV item, new available.
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('HINCRBY', KEYS[2], ARGV[1], new - old)
return old
