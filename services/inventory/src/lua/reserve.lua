-- Decide an OrderPlaced in one atomic step: dedupe, check every line and take the stock of all
-- of them or none, record the outcome, and schedule the record's compaction.
--
-- KEYS[1] reservation record of this order (hash)
-- KEYS[2] stock: item -> available (hash)
-- KEYS[3] reserved totals: item -> units ever reserved (hash)
-- KEYS[4] compaction schedule: order id -> due ms (sorted set)
-- KEYS[4 + i] the product hash of line i (optional: given, a reservation also reads what its
--         stock events say, as lua/stock_reading.lua does, in the same step)
-- ARGV    student_id, event_id (used only if this is the first decision), now (ms), order id,
--         retention (ms), then the states' names: reserved, failed (from Rust, so that the
--         words live in one place: ReservationState::as_str), then the lines: item, qty, item,
--         qty, ... (at least one; each item once, as Lines guarantees)
--
-- A lab order (one line) is recorded as it always was: item, qty, remaining. An order of several
-- also records `lines` (JSON: item, qty and, once reserved, remaining) and, when it failed,
-- `unserved` (JSON: item, qty, code of each line that could not be served).
--
-- Returns {is_new (1|0), flat record, readings}. A record that exists is returned untouched: the
-- caller re-publishes the outcome it describes, with the event id recorded the first time (or,
-- for a compacted record that no longer holds it, nothing: see handler.rs). Readings are
-- {seq, stock, low_threshold} per line, only for a reservation made now with product keys
-- given: each product's seq is incremented with the stock the reservation left, so the pair is
-- exact. Otherwise empty, and the caller reads the stock afterwards if it needs to.
local existing = redis.call('HGETALL', KEYS[1])
if #existing > 0 then
  return {0, existing, {}}
end

local now, order_id, retention = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local RESERVED, FAILED = ARGV[6], ARGV[7]
local lines = {}
for i = 8, #ARGV, 2 do
  lines[#lines + 1] = {item = ARGV[i], qty = tonumber(ARGV[i + 1])}
end

-- First look at every line; take nothing unless every one can be served.
local unserved, code, reason = {}, '', ''
for _, line in ipairs(lines) do
  local available = redis.call('HGET', KEYS[2], line.item)
  local why, words
  if not available then
    why, words = 'unknown_item', 'unknown item "' .. line.item .. '"'
  elseif tonumber(available) < line.qty then
    why = 'insufficient_stock'
    words = 'insufficient stock for ' .. line.item .. ': asked for ' .. line.qty .. ', ' .. available .. ' left'
  end
  if why then
    unserved[#unserved + 1] = {item = line.item, qty = line.qty, code = why}
    if code == '' then code, reason = why, words end
  end
end

local state = RESERVED
if #unserved > 0 then
  state = FAILED
  if #unserved > 1 then
    reason = reason .. ' (and ' .. (#unserved - 1) .. ' more line(s) unserved)'
  end
else
  for _, line in ipairs(lines) do
    line.remaining = redis.call('HINCRBY', KEYS[2], line.item, -line.qty)
    redis.call('HINCRBY', KEYS[3], line.item, line.qty)
  end
end

redis.call('HSET', KEYS[1],
  'state', state, 'student_id', ARGV[1], 'event_id', ARGV[2], 'code', code, 'reason', reason,
  'decided_at', ARGV[3])
if #lines == 1 then
  redis.call('HSET', KEYS[1], 'item', lines[1].item, 'qty', lines[1].qty,
    'remaining', lines[1].remaining or '')
else
  redis.call('HSET', KEYS[1], 'lines', cjson.encode(lines))
  if #unserved > 0 then
    redis.call('HSET', KEYS[1], 'unserved', cjson.encode(unserved))
  end
end
redis.call('ZADD', KEYS[4], now + retention, order_id)

local readings = {}
if state == RESERVED and #KEYS == 4 + #lines then
  for i, line in ipairs(lines) do
    local product = KEYS[4 + i]
    readings[#readings + 1] = redis.call('HINCRBY', product, 'seq', 1)
    readings[#readings + 1] = line.remaining
    readings[#readings + 1] = tonumber(redis.call('HGET', product, 'low_threshold')) or 0
  end
end
return {1, redis.call('HGETALL', KEYS[1]), readings}
