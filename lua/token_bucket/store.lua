-- Shared by token_bucket.lua, token_bucket_batch.lua and token_bucket_lease.lua: the bucket
-- written back with `tokens` (see token_bucket.lua on expiry), and the sleep to the next window.
local ttl = math.max(1, math.floor(burst * window * 2),
                     math.ceil((math.max(math.ceil(burst), 1) + 1) * window))
if add > 0 or tonumber(bucket[3]) ~= ttl then
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'refreshed', refreshed, 'ttl', ttl)
  redis.call('EXPIRE', KEYS[1], ttl)
  if refresh_knobs then
    redis.call('EXPIRE', KEYS[2], knobs_ttl)
  end
else
  if tokens ~= stored then
    redis.call('HSET', KEYS[1], 'tokens', tokens)
  end
  if refresh_knobs and knobs_ttl <= ttl then
    redis.call('EXPIRE', KEYS[2], knobs_ttl)
  end
end

local sleep = (window - math.max(0, now - refreshed) - 1) + (1000000 - tonumber(time[2])) / 1000000
