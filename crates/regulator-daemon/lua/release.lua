-- Give up the leader lease on shutdown, so another replica takes over at once rather than when
-- the lease expires. Deletes the key only if this replica still holds it.
--
-- KEYS[1]  the lease key
-- ARGV     this replica's token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
