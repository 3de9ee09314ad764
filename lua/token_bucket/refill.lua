-- Shared by token_bucket.lua, token_bucket_batch.lua and token_bucket_lease.lua: the bucket
-- read and refilled at `now`: capacity, stored and filled tokens, the window anchor.
local capacity = math.ceil(rps * burst * window)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'refreshed', 'ttl')
local stored = tonumber(bucket[1])
local tokens = stored or capacity
local refreshed = tonumber(bucket[2]) or 0

-- Refill is discrete: whole windows since the bucket's anchor, a window's worth each.
local elapsed = math.floor(math.max(0, now - refreshed) / window)
local add = math.ceil(elapsed * rps * window)
local filled = math.min(capacity, tokens + add)
if add > 0 then
  if refreshed == 0 then
    refreshed = now
  else
    refreshed = refreshed + elapsed * window
  end
end
