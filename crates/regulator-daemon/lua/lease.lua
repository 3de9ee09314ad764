-- Acquire or renew the leader lease: one writer among the daemon's replicas.
--
-- KEYS[1]  the lease key (regulator:leader)
-- ARGV     this replica's token, lease length in milliseconds
--
-- Reply: {1, length, epoch} when this replica holds the lease (newly taken or renewed),
-- {0, PTTL, ''} when another does, so a standby can try again the moment the lease runs out.
-- Renewal checks the token, so a replica that lost the lease (a long pause, a partition)
-- cannot extend the new leader's lease by mistake.
--
-- epoch is this server's clock in microseconds. A lease is taken only after the previous
-- holder's ran out, so the epoch a replica reads when it takes the lease is later than any
-- epoch the previous holder ever read: on a Redis Cluster, where the lease key and a
-- throttle's keys live in different slots, writes are fenced by it per throttle instead.
local holder = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local epoch = t[1] .. string.format('%06d', tonumber(t[2]))
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2]), epoch}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2]), epoch}
end
return {0, redis.call('PTTL', KEYS[1]), ''}
