-- Semaphore renew: extend a holder's hold to now + hold, if it has not run out.
--
-- KEYS[1]  holders  throttle:<name>:holders  (see semaphore_acquire.lua)
-- ARGV     hold (ms), holder id
--
-- Reply: { renewed 0|1, deadline }
--   renewed 0: the holder is gone or its hold ran out (the slot may be another's now); an
--              expired entry is removed. deadline is then 0.
--
-- A hold that ran out is never revived, even when no one has taken the slot yet: a permit
-- is valid only up to its deadline, which keeps the contract simple to state and to check.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if not score or score < now then
  if score then
    redis.call('ZREM', KEYS[1], ARGV[2])
  end
  return { 0, 0 }
end

local deadline = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], deadline, ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now))
return { 1, deadline }
