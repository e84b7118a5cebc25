-- Archive the due compacted records of one batch, each in this one atomic step: fold what it
-- counts in the ledger into the archived totals, then delete it. After this a duplicate
-- OrderPlaced of the order is no longer recognised (docs/OPERATIONS.md, "Retention").
--
-- KEYS[1] archive schedule (sorted set), KEYS[2] archived reserved totals (hash item -> units),
-- KEYS[3] archived released totals (hash), KEYS[4..] the records of the batch (hashes)
-- ARGV    now (ms), then the states' names: reserved, released (ReservationState::as_str),
--         then the batch's order ids (ARGV[i] for KEYS[i], from 4)
--
-- Folding follows the ledger rule (RESERVED_ONCE, crates/domain invariants.rs): a reserved
-- record counts each line (its item and qty, or each of its `lines`) as reserved; a released
-- one that gave units back counts each line as reserved and released; a failed one or a
-- tombstone nothing. Returns how many records were archived.
local now, RESERVED, RELEASED = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local archived = 0
for i = 4, #KEYS do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], id)
    local r = redis.call('HMGET', KEYS[i], 'state', 'item', 'qty', 'released_qty', 'lines')
    local state = r[1]
    if state then
      local lines = {}
      if r[5] and r[5] ~= '' then
        lines = cjson.decode(r[5])
      elseif r[2] and r[2] ~= '' then
        lines = {{item = r[2], qty = tonumber(r[3]) or 0}}
      end
      local back = tonumber(r[4]) or 0
      for _, line in ipairs(lines) do
        if state == RESERVED then
          redis.call('HINCRBY', KEYS[2], line.item, line.qty)
        elseif state == RELEASED and back ~= 0 then
          redis.call('HINCRBY', KEYS[2], line.item, line.qty)
          redis.call('HINCRBY', KEYS[3], line.item, line.qty)
        end
      end
      redis.call('DEL', KEYS[i])
      archived = archived + 1
    end
  end
end
return archived
