-- A due deadline that did not fail its order (the sweeper tried TimedOut first, through the
-- transition script): an order still CANCELLING has its cancel sent again and its deadline
-- moved on; any other order was decided since, and its deadline is dropped, unless a newer one
-- was set in the meantime (the score is still the due one).
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] outbox stream, KEYS[4] deadlines
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] the next deadline (ms), ARGV[4] the status a
-- cancel is re-sent in ('CANCELLING'), ARGV[5] the timeline line (JSON), ARGV[6] history cap,
-- ARGV[7..] the OrderCancelled outbox entry's field/value pairs.
-- Returns 1 when the cancel was sent again, 0 when the deadline was dropped or left alone.
local due = redis.call('ZSCORE', KEYS[4], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then
  return 0
end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= ARGV[4] then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
return 1
