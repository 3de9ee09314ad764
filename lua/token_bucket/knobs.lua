-- Shared by token_bucket.lua, token_bucket_batch.lua and token_bucket_lease.lua: the knobs in
-- force (the stored ones when usable, else the caller's defaults) and whether to refresh
-- their TTL.
local rps, burst, window
local source = 0
local knobs = redis.call('HMGET', KEYS[2], 'rps', 'burst', 'window')
if knobs[1] then
  rps, burst, window = tonumber(knobs[1]), tonumber(knobs[2]), tonumber(knobs[3])
  source = 2
  if rps and burst and window and (rps == -1 or (rps >= 0 and rps < math.huge))
      and burst >= 0 and burst < math.huge and window > 0 and window < math.huge
      and rps * burst * window < math.huge then
    source = 1
  end
end
if source ~= 1 then
  rps, burst, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
end
local knobs_ttl = tonumber(ARGV[4])
local refresh_knobs = source == 1 and knobs_ttl > 0
