-- limitlion-compatible token bucket, many decisions in one call: the coalesced form of
-- token_bucket.lua. Every request is decided in order, at one Redis TIME, exactly as that
-- many calls of token_bucket.lua in a row would decide them (at one instant, only the first
-- can refill), and the bucket is left as they would leave it.
--
-- KEYS[1]  bucket hash  throttle:<name>
-- KEYS[2]  knobs hash   throttle:<name>:knobs
-- ARGV     default rps, default burst, default window, knobs ttl (s, 0 = keep), then the
--          tokens requested by each call, in arrival order
--
-- Reply: { source, capacity, sleep in microseconds, allowed 0|1, tokens, allowed, tokens, ... }
--   one allowed/tokens pair per request, encoded as in token_bucket.lua (tokens left after
--   that request); source, capacity and sleep are the same for every request of the call.

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
  local reply
  if rps == 0 then
    reply = { source, 0, math.floor(window * 1000000 + 0.5) }
  else
    reply = { source, -1, 0 }
  end
  for _ = 5, #ARGV do
    reply[#reply + 1] = rps == 0 and 0 or 1
    reply[#reply + 1] = rps == 0 and 0 or 1
  end
  return reply
end

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

-- Each request in turn, as consecutive calls would take them.
local decisions = {}
tokens = filled
for i = 5, #ARGV do
  local requested = tonumber(ARGV[i])
  local allowed = 0
  if tokens >= requested then
    allowed = 1
    tokens = math.max(0, tokens - requested)
  end
  decisions[#decisions + 1] = allowed
  decisions[#decisions + 1] = tokens
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
local big = capacity >= 9007199254740992
if big then
  capacity = string.format('%.17g', capacity)
end
local reply = { source, capacity, math.floor(sleep * 1000000 + 0.5) }
for i = 1, #decisions, 2 do
  local left = decisions[i + 1]
  if big or left ~= math.floor(left) then
    left = string.format('%.17g', left)
  end
  reply[#reply + 1] = decisions[i]
  reply[#reply + 1] = left
end
return reply
