-- Write one tick's knob changes with their history, fenced by the leader lease.
--
-- KEYS[1]            the lease key (regulator:leader)
-- KEYS[2k], [2k+1]   throttle k's knobs hash and history stream
-- ARGV[1]            the writer's lease token ('' = not fenced: a store used outside the daemon)
-- ARGV[2]            TTL of knobs and history, in milliseconds
-- ARGV[3]            approximate cap of each history stream (XADD MAXLEN ~)
-- then, per throttle: the number of knob fields, field/value pairs for HSET, the number of
-- history fields, field/value pairs for XADD.
--
-- `repeated` (lua/history_repeated.lua) is prepended when the script is loaded.
--
-- Reply: 1 when written, 0 when the lease key does not hold ARGV[1]: the writer lost the
-- lease (a pause, a partition, a slow pipeline) and nothing at all is written. Redis runs the
-- script as one step, so no other replica can take the lease between the check and the write.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl, maxlen, a = ARGV[2], ARGV[3], 4
for k = 2, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  redis.call('HSET', KEYS[k], unpack(ARGV, a + 1, a + 2 * n))
  redis.call('PEXPIRE', KEYS[k], ttl)
  a = a + 2 * n + 1
  n = tonumber(ARGV[a])
  if not repeated(KEYS[k + 1], a, n) then
    redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, a + 1, a + 2 * n))
  end
  redis.call('PEXPIRE', KEYS[k + 1], ttl)
  a = a + 2 * n + 1
end
return 1
