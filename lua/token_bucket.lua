-- limitlion-compatible token bucket: one atomic decision per call.
--
-- KEYS[1]  bucket hash  throttle:<name>        fields tokens, refreshed
-- KEYS[2]  knobs hash   throttle:<name>:knobs  fields rps, burst, window
-- ARGV     default rps, default burst, default window, requested tokens, knobs ttl (s, 0 = keep)
--
-- Reply: { allowed 0|1, tokens "%.17g", sleep "%.6f", source, capacity "%.17g" }
--   source 0: no knobs hash (or no rps in it), the caller's defaults were used
--          1: the knobs hash was used
--          2: the knobs hash was unusable (missing or non-numeric burst/window, rps not a
--             number >= 0 or -1, window <= 0, non-finite values), the caller's defaults were used
--
-- The arithmetic is limitlion's (throttle.lua) exactly, so Python and Rust workers share buckets.
-- Its faults are mended: EXPIRE is at least 1 s (limitlion's EXPIRE 0 deletes the bucket when
-- burst*window < 0.5), and unusable knobs fall back to the defaults instead of raising a script
-- error. Keys arrive in KEYS so the script is cluster-safe. Redis >= 5 replicates script effects,
-- so redis.replicate_commands() is not needed.

local function usable(rps, burst, window)
  if not (rps and burst and window) then return false end
  if rps ~= -1 and not (rps >= 0 and rps < math.huge) then return false end
  if not (burst >= 0 and burst < math.huge) then return false end
  if not (window > 0 and window < math.huge) then return false end
  return rps * burst * window < math.huge
end

local rps, burst, window
local source = 0
local knobs = redis.call('HMGET', KEYS[2], 'rps', 'burst', 'window')
if knobs[1] then
  rps, burst, window = tonumber(knobs[1]), tonumber(knobs[2]), tonumber(knobs[3])
  if usable(rps, burst, window) then
    source = 1
    local knobs_ttl = tonumber(ARGV[5])
    if knobs_ttl > 0 then
      redis.call('EXPIRE', KEYS[2], knobs_ttl)
    end
  else
    source = 2
  end
end
if source ~= 1 then
  rps, burst, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
end

local time = redis.call('TIME')
local now = tonumber(time[1])

if rps == 0 then
  return { 0, '0', string.format('%.6f', window), source, '0' }
elseif rps == -1 then
  return { 1, '1', '0.000000', source, 'inf' }
end

local requested = tonumber(ARGV[4])
local capacity = math.ceil(rps * burst * window)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'refreshed')
local tokens = tonumber(bucket[1]) or capacity
local refreshed = tonumber(bucket[2]) or 0

-- Refill is discrete: whole windows since the bucket's anchor, a window's worth each.
local elapsed = math.floor(math.max(0, now - refreshed) / window)
local add = math.ceil(elapsed * rps * window)
local filled = math.min(capacity, tokens + add)
if add > 0 then
  if refreshed == 0 then
    refreshed = now
  else
    refreshed = refreshed + elapsed * window
  end
end

local allowed = 0
tokens = filled
if filled >= requested then
  allowed = 1
  tokens = math.max(0, filled - requested)
end

redis.call('HSET', KEYS[1], 'tokens', tokens, 'refreshed', refreshed)
redis.call('EXPIRE', KEYS[1], math.max(1, math.floor(burst * window * 2)))

local sleep = (window - math.max(0, now - refreshed) - 1) + (1000000 - tonumber(time[2])) / 1000000
return { allowed, string.format('%.17g', tokens), string.format('%.6f', sleep), source,
         string.format('%.17g', capacity) }
