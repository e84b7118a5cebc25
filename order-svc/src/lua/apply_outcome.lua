-- Apply an inventory outcome to an order as a guarded transition.
--
-- KEYS[1] order hash, KEYS[2] order history list, KEYS[3] prefix for per-status index sets
-- ARGV    event kind (reserved|failed|released), reason, now (ms), history entry (JSON, with a
--         "__STATUS__" placeholder this script fills), history cap
--
-- Allowed:  PLACED --reserved--> CONFIRMED   PLACED --failed--> FAILED
--           CANCELLING --released--> CANCELLED
-- Anything else (a duplicate, a stale or late event) changes nothing; it is still written to the
-- history, marked not applied, so a person can see it arrived.
-- Returns {applied (1|0), status after}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {0, ''}
end

local kind = ARGV[1]
local next_status = nil
if status == 'PLACED' and kind == 'reserved' then next_status = 'CONFIRMED'
elseif status == 'PLACED' and kind == 'failed' then next_status = 'FAILED'
elseif status == 'CANCELLING' and kind == 'released' then next_status = 'CANCELLED'
end

local entry = ARGV[4]
if next_status then
  redis.call('HSET', KEYS[1], 'status', next_status, 'updated_at', ARGV[3])
  if kind == 'failed' then
    redis.call('HSET', KEYS[1], 'reason', ARGV[2])
  end
  local id = redis.call('HGET', KEYS[1], 'order_id')
  local created = redis.call('HGET', KEYS[1], 'created_at')
  redis.call('ZREM', KEYS[3] .. status, id)
  redis.call('ZADD', KEYS[3] .. next_status, created, id)
  entry = string.gsub(entry, '__STATUS__', next_status)
  entry = string.gsub(entry, '"applied":false', '"applied":true')
else
  entry = string.gsub(entry, '__STATUS__', status)
end
redis.call('RPUSH', KEYS[2], entry)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
if next_status then
  return {1, next_status}
end
return {0, status}
