-- limitlion-compatible token bucket: one atomic decision per call.
--
-- KEYS[1]  bucket hash  throttle:<name>        fields tokens, refreshed (+ ttl, see below)
-- KEYS[2]  knobs hash   throttle:<name>:knobs  fields rps, burst, window
-- ARGV     default rps, default burst, default window, knobs ttl (s, 0 = keep), requested tokens
--          (the per-call value last, so a client can prebuild the rest of the command)
--
-- Reply: { allowed 0|1, tokens, sleep in microseconds, source, capacity }
--   tokens and capacity are integers when whole (they almost always are), else "%.17g" strings;
--   capacity is -1 for rps == -1 (unlimited).
--   source 0: no knobs hash (or no rps in it), the caller's defaults were used
--          1: the knobs hash was used
--          2: the knobs hash was unusable (missing or non-numeric burst/window, rps not a
--             number >= 0 or -1, window <= 0, non-finite values), the caller's defaults were used
--
-- The arithmetic is limitlion's (throttle.lua) exactly, so Python and Rust workers share buckets.
-- Its faults are mended: unusable knobs fall back to the defaults instead of raising a script
-- error; keys arrive in KEYS so the script is cluster-safe; and the bucket never gets EXPIRE 0
-- (which deletes it, lifting the limit).
--
-- Expiry. limitlion writes the bucket and EXPIREs it on every call. This script re-arms the
-- expiry only at a refill, for a new bucket, or when the knobs change the TTL the bucket needs
-- (kept in the bucket's `ttl` field, which limitlion ignores); otherwise it writes only the
-- tokens, and nothing at all for a denied call that changed nothing. That is safe because a
-- bucket is only ever deleted TTL seconds after its window anchor, and
--   TTL = max(floor(2 * burst * window), ceil((max(ceil(burst), 1) + 1) * window))
-- outlasts both the next window boundary (where a busy bucket refills and re-arms) and the
-- max(ceil(burst), 1) windows after which an idle bucket would be full again anyway: a deleted bucket
-- comes back full, exactly as the refill would have left it. The knobs' TTL is refreshed at each
-- re-arm, and on every call when it is shorter than that gap. Redis >= 5 replicates script
-- effects, so redis.replicate_commands() is not needed.

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

local time = redis.call('TIME')
local now = tonumber(time[1])

if rps == 0 or rps == -1 then
  -- The bucket is not touched; the knobs' TTL is, as limitlion does on every call.
  if refresh_knobs then
    redis.call('EXPIRE', KEYS[2], knobs_ttl)
  end
  if rps == 0 then
    return { 0, 0, math.floor(window * 1000000 + 0.5), source, 0 }
  end
  return { 1, 1, 0, source, -1 }
end

local requested = tonumber(ARGV[5])
local capacity = math.ceil(rps * burst * window)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'refreshed', 'ttl')
local stored = tonumber(bucket[1])
local tokens = stored or capacity
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

local ttl = math.max(1, math.floor(burst * window * 2),
                     math.ceil((math.max(math.ceil(burst), 1) + 1) * window))
if add > 0 or tonumber(bucket[3]) ~= ttl then
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'refreshed', refreshed, 'ttl', ttl)
  redis.call('EXPIRE', KEYS[1], ttl)
  if refresh_knobs then
    redis.call('EXPIRE', KEYS[2], knobs_ttl)
  end
else
  if tokens ~= stored then
    redis.call('HSET', KEYS[1], 'tokens', tokens)
  end
  if refresh_knobs and knobs_ttl <= ttl then
    redis.call('EXPIRE', KEYS[2], knobs_ttl)
  end
end

local sleep = (window - math.max(0, now - refreshed) - 1) + (1000000 - tonumber(time[2])) / 1000000
-- Whole numbers below 2^53 go back as integers; anything else as an exact string.
if capacity >= 9007199254740992 then
  capacity = string.format('%.17g', capacity)
  tokens = string.format('%.17g', tokens)
elseif tokens ~= math.floor(tokens) then
  tokens = string.format('%.17g', tokens)
end
return { allowed, tokens, math.floor(sleep * 1000000 + 0.5), source, capacity }
