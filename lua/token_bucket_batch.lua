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

--#include token_bucket/knobs.lua

--#include token_bucket/clock.lua

if unmetered then
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

--#include token_bucket/refill.lua

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

--#include token_bucket/store.lua
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
