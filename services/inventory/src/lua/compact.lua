-- Compact the due reservation records of one batch, each in this one atomic step: keep what
-- dedupe and the ledger need (state, item, qty, lines, released_qty) plus compacted_at, drop the rest
-- (student, event ids, reason, times), and schedule the archiving.
--
-- KEYS[1] compaction schedule (sorted set), KEYS[2] archive schedule (sorted set),
-- KEYS[3..] the records of the batch (hashes)
-- ARGV    now (ms), dedupe window (ms), then the batch's order ids (ARGV[2 + i] for KEYS[2 + i])
--
-- A record is compacted only if it is still due: a release since the batch was read has
-- re-armed it. Returns how many records were compacted.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local KEPT = {'state', 'item', 'qty', 'lines', 'released_qty'}
local compacted = 0
for i = 3, #KEYS do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], id)
    local values = redis.call('HMGET', KEYS[i], unpack(KEPT))
    if values[1] then
      local fields = {'compacted_at', now}
      for k, name in ipairs(KEPT) do
        if values[k] and values[k] ~= '' then
          fields[#fields + 1] = name
          fields[#fields + 1] = values[k]
        end
      end
      redis.call('DEL', KEYS[i])
      redis.call('HSET', KEYS[i], unpack(fields))
      redis.call('ZADD', KEYS[2], now + window, id)
      compacted = compacted + 1
    end
  end
end
return compacted
