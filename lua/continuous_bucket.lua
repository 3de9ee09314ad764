-- Continuous token bucket (python-redis-rate-limiter's algorithm, as one script): one atomic
-- decision per call.
--
-- KEYS[1]  bucket hash  throttle:<name>:continuous  fields tokens, updated (us), capacity,
--                                                   period (us)
-- KEYS[2]  knobs hash   throttle:<name>:knobs       fields rps (tokens per second),
--                                                   period (seconds)
-- ARGV     default tokens per period, default period (us), knobs ttl (s, 0 = leave it),
--          then per call: requested tokens
--
-- Reply: { allowed 0|1, decision time (us of Redis TIME), tokens, source, capacity, period }
--   tokens, capacity and period (us) are "%.17g" strings ("inf" tokens and capacity for rps -1);
--   source as in leaky_bucket.lua.
--
-- The bucket holds up to `capacity` = tokens per period and refills continuously, at
-- microsecond resolution, capacity / period tokens per microsecond; a new bucket is full;
-- tokens are fractional. A call takes `requested` tokens if the bucket holds that many, else
-- takes nothing. Knobs apply per field: capacity = rps * period whenever either comes from the
-- knobs (the missing one from the caller's values); rps 0 denies every call and rps -1 allows
-- every call, as for the token bucket, without touching the bucket. Unusable fields
-- (non-numeric, negative, NaN, inf) fall back to the caller's values. The script never writes
-- the knobs hash; a call whose knobs applied re-arms the knobs' TTL when it has run down below
-- the knobs TTL (so at most about once a second).
--
-- The bucket remembers the capacity and period it was filled under: the time since the last
-- update refills at that rate, then a lower capacity truncates, and the new rate applies from
-- this call on (a denied call re-anchors the bucket when the parameters changed). The key
-- expires when the bucket would be full again, so a deleted key means what an absent one
-- means; never PEXPIRE 0 (which deletes at once, as the original does for periods < 200 us).

local huge = math.huge
local tpp, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local raw = redis.call('HMGET', KEYS[2], 'rps', 'period')
local rps, knob_period
local used, invalid = false, false
if raw[1] then
  local v = tonumber(raw[1])
  if v and (v == -1 or (v >= 0 and v < huge)) then
    rps, used = v, true
  else
    invalid = true
  end
end
if raw[2] then
  local v = tonumber(raw[2])
  if v and v > 0 and v * 1000000 < huge then
    knob_period, used = v, true
  else
    invalid = true
  end
end
local capacity = tpp
if rps or knob_period then
  local seconds = knob_period or period / 1000000
  rps = rps or tpp * 1000000 / period
  if knob_period then period = knob_period * 1000000 end
  capacity = rps * seconds
  if rps > 0 and not (capacity > 0 and capacity < huge) then
    -- rps * period overflows or underflows: the caller's values apply.
    capacity, period, rps, invalid = tpp, tonumber(ARGV[2]), nil, true
  end
end
local source = 0
if invalid then source = 2 elseif used then source = 1 end

local knobs_ttl = tonumber(ARGV[3])
if source == 1 and knobs_ttl > 0 and redis.call('TTL', KEYS[2]) < knobs_ttl then
  redis.call('EXPIRE', KEYS[2], knobs_ttl)
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local function reply(allowed, tokens)
  return { allowed, now, string.format('%.17g', tokens), source,
           string.format('%.17g', capacity), string.format('%.17g', period) }
end
if rps == -1 then
  capacity = huge
  return reply(1, huge)
end
if rps == 0 then
  capacity = 0
  return reply(0, 0)
end

local requested = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'capacity', 'period')
local stored, updated = tonumber(b[1]), tonumber(b[2])
local old_capacity, old_period = tonumber(b[3]), tonumber(b[4])
local available = capacity
local changed = false
if stored and updated and old_capacity and old_period and stored >= 0
    and old_capacity > 0 and old_capacity < huge and old_period > 0 and old_period < huge then
  local elapsed = math.max(0, now - updated)
  available = math.min(old_capacity, stored + old_capacity * elapsed / old_period)
  available = math.min(capacity, available)
  changed = old_capacity ~= capacity or old_period ~= period
elseif b[1] or b[2] then
  -- An unreadable bucket is replaced by a full one.
  changed = true
end

local allowed = 0
local tokens = available
if available >= requested then
  allowed = 1
  tokens = available - requested
end

if allowed == 1 or changed then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', now,
             'capacity', string.format('%.17g', capacity),
             'period', string.format('%.17g', period))
  -- Until the bucket would be full again; at least 1 ms, never 0.
  local ttl = (capacity - tokens) * period / capacity
  redis.call('PEXPIRE', KEYS[1], math.min(1e15, math.max(1, math.ceil(ttl / 1000))))
end
return reply(allowed, tokens)
