-- Write knob changes with their history on a Redis Cluster, fenced by the writer's lease
-- epoch (see lease.lua): the lease key lives in another slot, so no script can check it here;
-- each throttle's own fence key, in the throttle's slot, holds the highest epoch that wrote
-- it instead. One call writes the changes of throttles that share a hash slot.
--
-- KEYS[3k-2], [3k-1], [3k]  throttle k's fence key (throttle:{<name>}:fence), knobs hash and
--                           history stream, every key in one slot
-- ARGV[1]  the writer's epoch ('' = not fenced: a store used outside the daemon)
-- ARGV[2]  TTL of knobs, history and fence, in milliseconds
-- ARGV[3]  approximate cap of each history stream (XADD MAXLEN ~)
-- then, per throttle: the number of knob fields, field/value pairs for HSET, the number of
-- history fields, field/value pairs for XADD.
--
-- Reply: the number of throttles refused because a writer with a later epoch (a newer
-- leader) has written them: this writer lost the lease, and nothing is written to those.
-- The others are written (0: all of them).
local epoch, ttl, maxlen, a = ARGV[1], ARGV[2], ARGV[3], 4
local refused = 0
for k = 1, #KEYS, 3 do
  local later = false
  if epoch ~= '' then
    local fence = redis.call('GET', KEYS[k])
    later = fence and (#fence > #epoch or (#fence == #epoch and fence > epoch))
  end
  local n = tonumber(ARGV[a])
  local fields = a
  a = a + 2 * n + 1
  local m = tonumber(ARGV[a])
  local history = a
  a = a + 2 * m + 1
  if later then
    refused = refused + 1
  else
    if epoch ~= '' then
      redis.call('SET', KEYS[k], epoch, 'PX', ttl)
    end
    redis.call('HSET', KEYS[k + 1], unpack(ARGV, fields + 1, fields + 2 * n))
    redis.call('PEXPIRE', KEYS[k + 1], ttl)
    redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, history + 1, history + 2 * m))
    redis.call('PEXPIRE', KEYS[k + 2], ttl)
  end
end
return refused
