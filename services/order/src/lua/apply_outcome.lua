-- Apply an inventory outcome to an order: a compare-and-set over the moves it is given.
--
-- KEYS[1] order hash, KEYS[2] order history list, KEYS[3] prefix for per-status index sets
-- ARGV[1] reason to record with the move ('' for none), ARGV[2] now (ms),
-- ARGV[3] history entry (JSON, without the status: this script adds it, and sets "applied"),
-- ARGV[4] history cap, ARGV[5..] the moves the event allows, as from, to, reason triples
-- (a move's own reason, '' for none, overrides ARGV[1]: e.g. a release order-svc never asked).
--
-- The rules are not here: the order state machine is saga_domain::order::OrderStatus, in Rust, which
-- computes the triples. If the order's status is a `from`, it moves to its `to`; otherwise (a
-- duplicate, a stale or late event) nothing changes, and the entry is still written to the
-- history, marked not applied, so a person can see it arrived.
-- Returns {applied (1|0), status after, status before}, or {0, '', ''} when there is no such order.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, '', ''}
end

local next_status = nil
local reason = ARGV[1]
for i = 5, #ARGV - 2, 3 do
  if ARGV[i] == status then
    next_status = ARGV[i + 1]
    if ARGV[i + 2] ~= '' then
      reason = ARGV[i + 2]
    end
    break
  end
end

local entry = cjson.decode(ARGV[3])
if next_status then
  redis.call('HSET', KEYS[1], 'status', next_status, 'updated_at', ARGV[2])
  if reason ~= '' then
    redis.call('HSET', KEYS[1], 'reason', reason)
  end
  local id = redis.call('HGET', KEYS[1], 'order_id')
  local created = redis.call('HGET', KEYS[1], 'created_at')
  redis.call('ZREM', KEYS[3] .. status, id)
  redis.call('ZADD', KEYS[3] .. next_status, created, id)
  entry.status = next_status
  entry.applied = true
else
  entry.status = status
end
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
if next_status then
  return {1, next_status, status}
end
return {0, status, status}
