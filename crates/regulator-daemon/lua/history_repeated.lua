-- Prepended to the knob-writing scripts (write_knobs.lua, write_knobs_cluster.lua).
--
-- A history entry equal, field for field, to the stream's last one is the same tick's write
-- made again (its reply was lost and the client repeated the call): it is not added twice.
-- Entries carry the tick's time in milliseconds, so two ticks never make equal entries.
local function repeated(key, from, n)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if not last or #last[2] ~= 2 * n then
    return false
  end
  for i = 1, 2 * n do
    if last[2][i] ~= ARGV[from + i] then
      return false
    end
  end
  return true
end
