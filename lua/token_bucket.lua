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

--#include token_bucket/knobs.lua

--#include token_bucket/clock.lua

if unmetered then
  if rps == 0 then
    return { 0, 0, math.floor(window * 1000000 + 0.5), source, 0 }
  end
  return { 1, 1, 0, source, -1 }
end

local requested = tonumber(ARGV[5])
--#include token_bucket/refill.lua

local allowed = 0
tokens = filled
if filled >= requested then
  allowed = 1
  tokens = math.max(0, filled - requested)
end

--#include token_bucket/store.lua
-- Whole numbers below 2^53 go back as integers; anything else as an exact string.
if capacity >= 9007199254740992 then
  capacity = string.format('%.17g', capacity)
  tokens = string.format('%.17g', tokens)
elseif tokens ~= math.floor(tokens) then
  tokens = string.format('%.17g', tokens)
end
return { allowed, tokens, math.floor(sleep * 1000000 + 0.5), source, capacity }
