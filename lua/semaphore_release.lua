-- Semaphore release: give a holder's slot back.
--
-- KEYS[1]  holders  throttle:<name>:holders  (see semaphore_acquire.lua)
-- ARGV     holder id
--
-- Reply: 1 when the holder's hold was still running; 0 when it had run out (or the holder was
-- gone already): the work outlived its hold, and the capacity may have been exceeded.
-- Either way the holder is no longer in the set.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if score < now then
  return 0
end
return 1
