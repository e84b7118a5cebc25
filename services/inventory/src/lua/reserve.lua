-- Decide an OrderPlaced in one atomic step: dedupe, check and take stock, record the outcome,
-- and schedule the record's compaction.
--
-- KEYS[1] reservation record of this order (hash)
-- KEYS[2] stock: item -> available (hash)
-- KEYS[3] reserved totals: item -> units ever reserved (hash)
-- KEYS[4] compaction schedule: order id -> due ms (sorted set)
-- ARGV    item, qty, student_id, event_id (used only if this is the first decision), now (ms),
--         order id, retention (ms), then the states' names: reserved, failed (from Rust, so
--         that the words live in one place: ReservationState::as_str)
--
-- Returns {is_new (1|0), flat record}. A record that exists is returned untouched: the caller
-- re-publishes the outcome it describes, with the event id recorded the first time (or, for a
-- compacted record that no longer holds it, nothing: see handler.rs).
local existing = redis.call('HGETALL', KEYS[1])
if #existing > 0 then
  return {0, existing}
end

local item, qty = ARGV[1], tonumber(ARGV[2])
local now, order_id, retention = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local RESERVED, FAILED = ARGV[8], ARGV[9]
local available = redis.call('HGET', KEYS[2], item)
local state, code, reason, remaining = RESERVED, '', '', ''
if not available then
  state, code = FAILED, 'unknown_item'
  reason = 'unknown item "' .. item .. '"'
elseif tonumber(available) < qty then
  state, code = FAILED, 'insufficient_stock'
  reason = 'insufficient stock for ' .. item .. ': asked for ' .. qty .. ', ' .. available .. ' left'
else
  remaining = redis.call('HINCRBY', KEYS[2], item, -qty)
  redis.call('HINCRBY', KEYS[3], item, qty)
end

redis.call('HSET', KEYS[1],
  'state', state, 'item', item, 'qty', qty, 'student_id', ARGV[3],
  'event_id', ARGV[4], 'code', code, 'reason', reason, 'remaining', remaining, 'decided_at', ARGV[5])
redis.call('ZADD', KEYS[4], now + retention, order_id)
return {1, redis.call('HGETALL', KEYS[1])}
