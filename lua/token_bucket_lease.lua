-- limitlion-compatible token bucket, leased: a process reserves a batch of tokens in one call
-- and spends them locally, and gives back what it did not spend. Tokens leave the bucket
-- exactly as consumption would take them (same refill, same writes, so Python and Rust
-- workers on the bucket see an ordinary bucket), so the fleet never gets more than the bucket
-- holds.
--
-- KEYS[1]  bucket hash  throttle:<name>
-- KEYS[2]  knobs hash   throttle:<name>:knobs
-- KEYS[3]  leases hash  throttle:<name>:leases  field per lease in hand: lease id -> tokens
--                       reserved; `anchor`: the window the leases were granted in; `next`:
--                       the last lease id given out
-- ARGV     default rps, default burst, default window, knobs ttl (s, 0 = keep),
--          returned tokens (unspent, of the lease that ends with this call; 0 if none),
--          that lease's anchor ("%.17g" `refreshed` of the bucket when it was granted; "" if
--          none), requested (the least a grant may hold; 0 = only give back), wanted (the
--          batch the process would like, >= requested), max share (of capacity, in (0, 1]),
--          that lease's id ("" if none)
--
-- Returned tokens go back only while the bucket is in the window they were taken in (its
-- anchor unchanged, no refill since). After a refill they are dropped: the refill was capped
-- at capacity without them, so giving them back then could hand out more than the bucket
-- would have held. A lease must therefore end by the window's end; the client ends it there.
--
-- The script, not the client, decides how much goes back: each grant is recorded under its
-- lease id, a give-back restores at most what is recorded for that id and deletes the record.
-- So no client can return more than it reserved (a bad `returned` mints nothing), and a
-- give-back repeated after a lost reply restores nothing the second time. Records of an
-- earlier window are void and deleted at the first call that sees the new window.
--
-- Grant: nothing unless the bucket holds `requested`; otherwise the least of `wanted`, what the
-- bucket holds, and max share x capacity (but never less than `requested`).
--
-- Reply: { granted, tokens, sleep in microseconds, source, capacity, anchor, restored, id }
--   granted -1 when rps == -1 (unlimited: decide everything allowed until the lease ends);
--   tokens: left in the bucket; sleep: until the next window (as token_bucket.lua);
--   source and capacity as token_bucket.lua; anchor: the bucket's `refreshed` ("%.17g");
--   restored: how many of the returned tokens went back; id: the new lease's id ("" when
--   nothing was granted). Numbers that are not whole, or not
--   below 2^53, are "%.17g" strings.

local function enc(x)
  if x == math.floor(x) and math.abs(x) < 9007199254740992 then
    return x
  end
  return string.format('%.17g', x)
end

--#include token_bucket/knobs.lua
local returned = tonumber(ARGV[5]) or 0
local lease_anchor = tonumber(ARGV[6])
local requested = tonumber(ARGV[7]) or 0
local wanted = math.max(requested, tonumber(ARGV[8]) or 0)
local share = tonumber(ARGV[9]) or 1
-- Lease ids are the positive integers this script gives out, never a field of another kind.
local lease_id = ARGV[10] or ''
if not string.match(lease_id, '^[1-9]%d*$') then
  lease_id = ''
end

--#include token_bucket/clock.lua

if unmetered then
  if rps == 0 then
    return { 0, 0, math.floor(window * 1000000 + 0.5), source, 0, '', 0, '' }
  end
  return { -1, 1, 0, source, -1, '', 0, '' }
end

--#include token_bucket/refill.lua
tokens = filled

-- The lease records of this window; those of an earlier one are void.
local anchor = string.format('%.17g', refreshed)
local leases = redis.call('HMGET', KEYS[3], 'anchor', 'next', lease_id)
local current = leases[1] == anchor
local next_id = tonumber(leases[2]) or 0

-- Give back first, as if the tokens had never left: only within the window they came from,
-- and never more than the lease reserved.
local restored = 0
if leases[3] and current and lease_anchor == refreshed then
  if returned > 0 and stored and add == 0 then
    restored = math.max(0, math.min(returned, tonumber(leases[3]) or 0, capacity - tokens))
    tokens = tokens + restored
  end
  redis.call('HDEL', KEYS[3], lease_id)
end

local granted = 0
local granted_id = ''
if requested > 0 and tokens >= requested then
  granted = math.max(requested, math.min(wanted, tokens, share * capacity))
  tokens = math.max(0, tokens - granted)
  next_id = next_id + 1
  granted_id = tostring(next_id)
  if not current then
    redis.call('DEL', KEYS[3])
  end
  redis.call('HSET', KEYS[3], 'anchor', anchor, 'next', next_id, granted_id, enc(granted))
end

--#include token_bucket/store.lua
if granted_id ~= '' then
  redis.call('EXPIRE', KEYS[3], ttl)
end
return { enc(granted), enc(tokens), math.floor(sleep * 1000000 + 0.5), source, enc(capacity),
         anchor, enc(restored), granted_id }
