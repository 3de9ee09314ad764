-- Acquire or renew the leader lease: one writer among the daemon's replicas.
--
-- KEYS[1]  the lease key (regulator:leader)
-- ARGV     this replica's token, lease length in milliseconds
--
-- Reply: {1, length} when this replica holds the lease (newly taken or renewed), {0, PTTL}
-- when another does, so a standby can try again the moment the lease runs out.
-- Renewal checks the token, so a replica that lost the lease (a long pause, a partition)
-- cannot extend the new leader's lease by mistake.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
