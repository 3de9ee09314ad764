-- Leaky bucket with blocking (aiosteady's algorithm, mended): one atomic decision per call.
--
-- KEYS[1]  bucket hash  throttle:<name>:leaky  fields level, updated, blocked_until, rate
-- KEYS[2]  knobs hash   throttle:<name>:knobs  fields rps (drops leaked per second), capacity,
--                                              block (seconds, 0 = none)
-- KEYS[3]  drains       throttle:<name>:drains sorted set: request id -> Redis time (us) of
--                                              the drains applied in the last minute
-- ARGV     default rate, default capacity, default block (s), knobs ttl (s, 0 = leave it),
--          then per call: 'consume' or 'peek', amount (ignored by peek), request id (a drain's
--          id, unique fleet-wide; "" for other calls)
--
-- Reply: { allowed 0|1, level, until_next_drop (us), blocked_for (us), source, capacity, rate }
--   level, capacity and rate are "%.17g" strings; source as in token_bucket.lua, per field:
--   0 no knob field applied, 1 knob fields applied, 2 a present field was unusable (its
--   default applied in its place).
--
-- A bucket starts empty; a consume adds `amount` drops (a negative amount drains, never below
-- 0) unless that would take the level above capacity. Drops leak one at a time, one every
-- 1/rate seconds, on a timer that consumes do not reset: `updated` is the time the last drop
-- left (or the bucket was first filled), in microseconds of Redis TIME. An overflow fails
-- and, with a block duration, blocks the bucket: every call fails until `blocked_until`.
--
-- rps 0 in the knobs denies every call and rps -1 allows every call, as they do for the token
-- bucket; neither touches the bucket. Other unusable fields (non-numeric, negative, NaN, inf)
-- fall back to the caller's value. The script never writes the knobs hash; a consume whose
-- knobs applied re-arms the knobs' TTL when it has run down below the knobs TTL (so at most
-- about once a second).
--
-- Expiry: the key lives exactly until its level reaches 0 and any block is over, so a deleted
-- key means what an absent one means (an empty, unblocked bucket). aiosteady's faults are
-- mended: PEXPIRE in milliseconds (its SETEX fails on a fractional TTL), an overflow reports
-- the real level, a drain is never refused, and the key is deleted as soon as it is empty.
--
-- A drain gives drops back, so it is applied once per request id: a drain repeated after its
-- reply was lost (a dropped connection, a cluster client's retry) finds its id and changes
-- nothing. Ids are kept a minute, far longer than any call is repeated within.
--
-- The bucket remembers the rate its timer runs at. When the rate changes, the time already
-- spent on the current drop keeps its share of a drop, and the next consume re-anchors the
-- bucket (and its TTL) to the new rate.

local huge = math.huge
local checks = {
  function(v) return v == 0 or v == -1 or (v > 0 and v < huge and 1000000 / v < huge) end,
  function(v) return v > 0 and v < huge end,
  function(v) return v >= 0 and v * 1000000 < huge end,
}
local raw = redis.call('HMGET', KEYS[2], 'rps', 'capacity', 'block')
local params = {}
local used, invalid = false, false
for i = 1, 3 do
  params[i] = tonumber(ARGV[i])
  if raw[i] then
    local v = tonumber(raw[i])
    if v and checks[i](v) then
      params[i] = v
      used = true
    else
      invalid = true
    end
  end
end
local source = 0
if invalid then source = 2 elseif used then source = 1 end
local rate, capacity, block = params[1], params[2], params[3] * 1000000
local op = ARGV[5]

local knobs_ttl = tonumber(ARGV[4])
if op == 'consume' and source == 1 and knobs_ttl > 0
    and redis.call('TTL', KEYS[2]) < knobs_ttl then
  redis.call('EXPIRE', KEYS[2], knobs_ttl)
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local b = redis.call('HMGET', KEYS[1], 'level', 'updated', 'blocked_until', 'rate')
local level = tonumber(b[1]) or 0
if not (level > 0) then level = 0 end
local updated = math.min(tonumber(b[2]) or now, now)
local blocked_until = tonumber(b[3]) or 0
local stored_rate = tonumber(b[4])
if not (stored_rate and stored_rate > 0 and checks[1](stored_rate)) then
  stored_rate = nil
end

-- Whole drops leak at the rate the timer ran at.
if level > 0 and stored_rate then
  local stored_recharge = 1000000 / stored_rate
  local drops = math.floor((now - updated) / stored_recharge)
  if drops > 0 then
    level = math.max(0, level - drops)
    updated = updated + drops * stored_recharge
  end
end
if level == 0 then updated = now end
local blocked_for = math.max(0, blocked_until - now)

local function reply(allowed, until_next_drop)
  return { allowed, string.format('%.17g', level), math.floor(until_next_drop + 0.5),
           math.floor(blocked_for + 0.5), source, string.format('%.17g', capacity),
           string.format('%.17g', rate) }
end

if rate == 0 or rate == -1 then
  if rate == -1 then return reply(1, 0) end
  return reply(0, 0)
end

local recharge = 1000000 / rate
-- Stored under another rate: the current drop keeps the share of it already leaked.
local dirty = level > 0 and stored_rate ~= rate
if dirty and stored_rate then
  updated = now - (now - updated) * recharge * stored_rate / 1000000
end
local function until_next_drop()
  if level > 0 then return updated + recharge - now end
  return recharge
end

if op == 'peek' then
  local allowed = 0
  if blocked_for == 0 and level + 1 <= capacity then allowed = 1 end
  return reply(allowed, until_next_drop())
end

local amount = tonumber(ARGV[6])
local request = ARGV[7] or ''
local drain = amount < 0 and request ~= ''
if drain and redis.call('ZSCORE', KEYS[3], request) then
  return reply(1, until_next_drop())
end
local allowed = 0
local write = dirty
if blocked_for > 0 then
  -- Blocked: the call fails and changes nothing.
elseif amount <= 0 or level + amount <= capacity then
  allowed = 1
  if amount ~= 0 then
    level = math.max(0, level + amount)
    if level == 0 then updated = now end
    write = true
  end
  if drain then
    redis.call('ZADD', KEYS[3], now, request)
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000000)
    redis.call('PEXPIRE', KEYS[3], 60000)
  end
elseif block > 0 then
  blocked_until = now + block
  blocked_for = block
  write = true
end

if write then
  -- The key lives until the level has leaked away and any block is over.
  local ttl = blocked_for
  if level > 0 then ttl = math.max(ttl, updated + math.ceil(level) * recharge - now) end
  if ttl <= 0 then
    redis.call('DEL', KEYS[1])
  else
    if blocked_for == 0 then blocked_until = 0 end
    redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level),
               'updated', string.format('%.17g', updated),
               'blocked_until', string.format('%.17g', blocked_until),
               'rate', string.format('%.17g', rate))
    redis.call('PEXPIRE', KEYS[1], math.min(1e15, math.max(1, math.ceil(ttl / 1000))))
  end
end
return reply(allowed, until_next_drop())
