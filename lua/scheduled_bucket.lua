-- Scheduled token bucket (the `limiters` library's TokenBucket): it never denies, it hands out
-- the time at which the requested tokens are available and the caller sleeps until then.
--
-- KEYS[1]  state  throttle:<name>:scheduled  hash: slot (the latest slot handed out, in
--                                            microseconds of Redis time), tokens (left at it)
-- KEYS[2]  knobs  throttle:<name>:knobs      fields rps, capacity (each optional)
-- ARGV     capacity, refill amount, refill period (us), knobs ttl (s, 0 = keep),
--          requested tokens, max wait (us, 0 = no limit)
--          (the per-call values last, so a client can prebuild the rest of the command)
--
-- Reply: { status, wait, slot, source, capacity, period }
--   status    1: reserved; 0: the wait would exceed max wait, nothing written;
--             2: paused (rps 0): no slot will come until the knob changes, nothing written;
--             3: unlimited (rps -1): no wait, nothing written
--   wait      us from now until the slot (0 when the tokens are there now)
--   slot      the slot, us of Redis time
--   source    0: no knob stored, the caller's values applied; 1: stored knobs applied;
--             2: a stored knob is unusable and the caller's value replaced it
--   capacity, period: the values that applied (period in us; 0 for status 2 and 3)
--
-- Knobs, each field on its own: `rps` (tokens per second, so period = refill amount / rps;
-- 0 pauses, -1 lifts the limit) and `capacity` (a positive integer).
--
-- The arithmetic is limiters' (token_bucket.lua): a new bucket is full at `now`; whole periods
-- passed since the stored slot refill `refill amount` each, up to capacity; when the tokens
-- run short the slot moves a period ahead and the next refill is handed out. Three changes:
--   * time is Redis TIME in microseconds (limiters reads the client's clock), and the reply
--     is a wait relative to it, so no two clocks are compared;
--   * a refill keeps the slot on its grid (slot + passed * period) instead of moving it to
--     now + 20 ms, so the rate is exact whatever the callers' timing, and no call sleeps
--     20 ms for a token that is there;
--   * the max wait is checked here, before anything is written: a reservation that would
--     wait too long takes nothing (limiters consumes it and raises).
-- A request for more tokens than are left takes them from as many future refills as needed.
--
-- Expiry: the state can vanish once the bucket would be full again (a new bucket is full), so
-- it expires then; an idle bucket leaves nothing behind.

local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
-- About 50 days: a period beyond it (a tiny rps) counts as paused, keeping slots exact.
local max_period = 4398046511104

local knobs = redis.call('HMGET', KEYS[2], 'rps', 'capacity')
local used, bad = false, false
local rps
if knobs[1] then
  local r = tonumber(knobs[1])
  if r and (r == -1 or (r >= 0 and r < math.huge)) then
    rps, used = r, true
    if r > 0 then
      period = math.max(1, math.floor(refill * 1000000 / r + 0.5))
      if period > max_period then
        rps = 0
      end
    end
  else
    bad = true
  end
end
if knobs[2] then
  local c = tonumber(knobs[2])
  if c and c >= 1 and c < 4294967296 and c == math.floor(c) then
    capacity, used = c, true
  else
    bad = true
  end
end
local source = 0
if bad then
  source = 2
elseif used then
  source = 1
end
local knobs_ttl = tonumber(ARGV[4])
if used and knobs_ttl > 0 then
  redis.call('EXPIRE', KEYS[2], knobs_ttl)
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

if rps == -1 then
  return { 3, 0, now, source, capacity, 0 }
elseif rps == 0 then
  return { 2, 0, now, source, capacity, 0 }
end

local requested = tonumber(ARGV[5])
local max_wait = tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 'slot', 'tokens')
local slot, tokens = tonumber(state[1]), tonumber(state[2])
if not slot or not tokens then
  slot, tokens = now, capacity
else
  local passed = math.floor((now - slot) / period)
  if passed > 0 then
    tokens = math.min(tokens + passed * refill, capacity)
    slot = slot + passed * period
  end
  if slot <= now then
    -- A capacity lowered by the knobs applies at once to the tokens there now.
    tokens = math.min(tokens, capacity)
  end
end

if tokens < requested then
  local periods = math.ceil((requested - tokens) / refill)
  slot = slot + periods * period
  tokens = tokens + periods * refill
end
tokens = tokens - requested

local wait = math.max(0, slot - now)
if max_wait > 0 and wait > max_wait then
  return { 0, wait, slot, source, capacity, period }
end

redis.call('HSET', KEYS[1], 'slot', slot, 'tokens', tokens)
local full = slot + math.ceil(math.max(0, capacity - tokens) / refill) * period
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((full - now) / 1000)))
return { 1, wait, slot, source, capacity, period }
