-- Semaphore acquire: grant a slot when fewer than `capacity` holders have an unexpired hold.
--
-- KEYS[1]  holders  throttle:<name>:holders  sorted set: member = holder id, score = that
--                                            holder's hold deadline, ms of Redis time
-- KEYS[2]  knobs    throttle:<name>:knobs    field `concurrency` (optional)
-- ARGV     default capacity, hold (ms), knobs ttl (s, 0 = keep), holder id
--
-- Reply: { granted 0|1, holders, capacity, source, deadline, next }
--   holders   how many hold a slot after this call (this holder included when granted)
--   capacity  the capacity that applied
--   source    0: no `concurrency` knob, the caller's capacity applied; 1: the knob applied;
--             2: the knob is not a positive integer, the caller's capacity applied
--   deadline  granted: this holder's hold deadline (ms of Redis time); else 0
--   next      denied: ms until the earliest hold runs out (when a slot frees at the latest,
--             unless its holder renews); else 0
--
-- Each holder has its own hold, so a crashed holder frees its own slot, and only that one,
-- when its hold runs out: expired holders are removed before counting. A holder id already in
-- the set with an unexpired hold is granted again (its hold refreshed) whatever the count:
-- a call repeated after its reply was lost must not take a second slot. A capacity knob that
-- shrinks takes effect at once: no one enters while the count is at or above it; nobody is
-- evicted. The set expires with its latest hold, so an abandoned semaphore vanishes.

local capacity = tonumber(ARGV[1])
local source = 0
local knob = redis.call('HGET', KEYS[2], 'concurrency')
if knob then
  local c = tonumber(knob)
  if c and c >= 1 and c < 4294967296 and c == math.floor(c) then
    capacity = c
    source = 1
    local knobs_ttl = tonumber(ARGV[3])
    if knobs_ttl > 0 then
      redis.call('EXPIRE', KEYS[2], knobs_ttl)
    end
  else
    source = 2
  end
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now))
local count = redis.call('ZCARD', KEYS[1])
local mine = redis.call('ZSCORE', KEYS[1], ARGV[4])

if mine or count < capacity then
  local deadline = now + tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], deadline, ARGV[4])
  if not mine then
    count = count + 1
  end
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now))
  return { 1, count, capacity, source, deadline, 0 }
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 0, count, capacity, source, 0, math.max(0, tonumber(first[2]) - now) }
