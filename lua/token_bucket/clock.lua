-- Shared by token_bucket.lua, token_bucket_batch.lua and token_bucket_lease.lua: Redis time,
-- and for rps 0 (deny everything) or -1 (allow everything) the knobs' TTL refreshed, as
-- limitlion does on every call, and the bucket left untouched (each script then answers).
local time = redis.call('TIME')
local now = tonumber(time[1])
local unmetered = rps == 0 or rps == -1
if unmetered and refresh_knobs then
  redis.call('EXPIRE', KEYS[2], knobs_ttl)
end
