-- Read the stock of some items for their stock events, each with a fresh seq, in one atomic
-- step: (seq, stock) is a consistent pair, so a replica that keeps the highest seq it saw ends
-- with the latest stock, whatever order the events arrive in. Run by the handler right after a
-- release, and for a duplicate's re-announcement (a reservation made now reads the same in
-- lua/reserve.lua: see crate::catalog).
--
-- KEYS[1] stock: item -> available, KEYS[1 + i] item i's product hash
-- ARGV    item i as ARGV[i]
--
-- Returns {seq, stock, low_threshold} for each item in turn (0 for what is unknown).
local out = {}
for i = 1, #ARGV do
  local seq = redis.call('HINCRBY', KEYS[1 + i], 'seq', 1)
  out[#out + 1] = seq
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i])) or 0
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[1 + i], 'low_threshold')) or 0
end
return out
