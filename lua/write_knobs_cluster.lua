-- Write one throttle's knob change with its history on a Redis Cluster, fenced by the
-- writer's lease epoch (see lease.lua): the lease key lives in another slot, so no script can
-- check it here; the throttle's own fence key, in the throttle's slot, holds the highest
-- epoch that wrote it instead.
--
-- KEYS[1]  the throttle's fence key (throttle:{<name>}:fence)
-- KEYS[2]  its knobs hash
-- KEYS[3]  its history stream
-- ARGV[1]  the writer's epoch ('' = not fenced: a store used outside the daemon)
-- ARGV[2]  TTL of knobs, history and fence, in milliseconds
-- ARGV[3]  approximate cap of the history stream (XADD MAXLEN ~)
-- then: the number of knob fields, field/value pairs for HSET, the number of history
-- fields, field/value pairs for XADD.
--
-- Reply: 1 when written, 0 when a writer with a later epoch (a newer leader) has written this
-- throttle: this writer lost the lease, and nothing is written.
local ttl, maxlen = ARGV[2], ARGV[3]
if ARGV[1] ~= '' then
  local fence = redis.call('GET', KEYS[1])
  if fence and #fence > #ARGV[1] or (fence and #fence == #ARGV[1] and fence > ARGV[1]) then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
end
local a = 4
local n = tonumber(ARGV[a])
redis.call('HSET', KEYS[2], unpack(ARGV, a + 1, a + 2 * n))
redis.call('PEXPIRE', KEYS[2], ttl)
a = a + 2 * n + 1
n = tonumber(ARGV[a])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, a + 1, a + 2 * n))
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
