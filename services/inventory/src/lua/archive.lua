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
-- record counts its qty as reserved; a released one its released_qty as reserved and released;
-- a failed one or a tombstone nothing. Returns how many records were archived.
local now, RESERVED, RELEASED = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local archived = 0
for i = 4, #KEYS do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], id)
    local r = redis.call('HMGET', KEYS[i], 'state', 'item', 'qty', 'released_qty')
    local state, item = r[1], r[2]
    if state then
      if item and item ~= '' then
        if state == RESERVED then
          redis.call('HINCRBY', KEYS[2], item, tonumber(r[3]) or 0)
        elseif state == RELEASED then
          local back = tonumber(r[4]) or 0
          if back ~= 0 then
            redis.call('HINCRBY', KEYS[2], item, back)
            redis.call('HINCRBY', KEYS[3], item, back)
          end
        end
      end
      redis.call('DEL', KEYS[i])
      archived = archived + 1
    end
  end
end
return archived
