-- Move an order: the one compare-and-set every transition goes through (inventory's outcomes, a
-- cancel, a PATCH, the decision deadline), with everything the move implies, atomically: the
-- order's status and index, its timeline line, its status event (and, for a cancel or a
-- timeout, its OrderCancelled) in the outbox, its deadline, its retention. A crash can never
-- leave a move without its event, or an event without its move.
--
-- The rules are not here: saga_domain::order::OrderStatus, in Rust, computes the moves the event
-- allows and, for each, everything it implies (its outbox entries are built in Rust too, so
-- every body is serde's, byte for byte). This script finds the move that starts from the
-- order's status, if any, and applies it.
--
-- KEYS[1] order hash, KEYS[2] history list, KEYS[3] per-status index prefix, KEYS[4] outbox
-- stream, KEYS[5] deadlines (sorted set), KEYS[6] finished orders' expiry (sorted set),
-- KEYS[7] the Idempotency-Key's record (used only with a key)
-- ARGV[1] now (ms), ARGV[2] the timeline line (JSON, without status: this script adds it, and
-- `applied` and `status_event_id` when the order moves), ARGV[3] history cap, ARGV[4] '1' to
-- note an event that moves nothing in the timeline (a duplicate, a late outcome), '0' not to
-- (a refused request changes nothing at all), ARGV[5] the status event's id, ARGV[6] the
-- request as the key's record keeps it ('' without a key), ARGV[7] the idempotency window (ms),
-- ARGV[8] the answer the key's record keeps (an HTTP status),
-- ARGV[9..] the moves, six arguments each: from, to, reason for the order ('' none), deadline
-- (ms; '' clears it), expiry (ms; '' none), the outbox entries (a JSON array of flat
-- field/value arrays).
-- Returns {1, status after, status before} when moved, {0, status, status} when nothing moved,
-- {0, '', ''} when there is no such order, {2, order id, request} when the key was recorded.
if ARGV[6] ~= '' then
  local seen = redis.call('HMGET', KEYS[7], 'order_id', 'request')
  if seen[1] then
    return {2, seen[1], seen[2] or ''}
  end
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, '', ''}
end
local move = nil
for i = 9, #ARGV - 5, 6 do
  if ARGV[i] == status then
    move = i
    break
  end
end

local entry = cjson.decode(ARGV[2])
local function note(line)
  redis.call('RPUSH', KEYS[2], cjson.encode(line))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
end
if not move then
  if ARGV[4] == '1' then
    entry.status = status
    note(entry)
  end
  return {0, status, status}
end

local to, reason = ARGV[move + 1], ARGV[move + 2]
local deadline, expiry, entries = ARGV[move + 3], ARGV[move + 4], ARGV[move + 5]
local order = redis.call('HMGET', KEYS[1], 'order_id', 'created_at')
local id, created = order[1], order[2]
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', ARGV[1])
if reason ~= '' then
  redis.call('HSET', KEYS[1], 'reason', reason)
  if entry.reason == nil then
    entry.reason = reason
  end
end
redis.call('ZREM', KEYS[3] .. status, id)
redis.call('ZADD', KEYS[3] .. to, created, id)
if deadline == '' then
  redis.call('ZREM', KEYS[5], id)
else
  redis.call('ZADD', KEYS[5], deadline, id)
end
if expiry ~= '' then
  redis.call('ZADD', KEYS[6], expiry, id)
end
for _, fields in ipairs(cjson.decode(entries)) do
  redis.call('XADD', KEYS[4], '*', unpack(fields))
end
entry.status = to
entry.applied = true
entry.status_event_id = ARGV[5]
note(entry)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[7], 'order_id', id, 'request', ARGV[6], 'status', ARGV[8], 'at', ARGV[1])
  redis.call('PEXPIRE', KEYS[7], ARGV[7])
end
return {1, to, status}
