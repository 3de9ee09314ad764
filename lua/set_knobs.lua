-- Write knobs by hand, atomically, as limitlion's throttle_set does in a pipeline.
--
-- KEYS[1]  knobs hash throttle:<name>:knobs
-- ARGV     ttl in milliseconds (0 = leave the TTL as it is), then field/value pairs to set
--
-- A knob that is not given must already exist in the hash (limitlion raises IndexError
-- otherwise); the reply lists such missing fields and nothing is written. Values are validated
-- by the caller before the call. Reply: {} on success, else the names of the missing fields.

local given = {}
for i = 2, #ARGV, 2 do
  given[ARGV[i]] = true
end
local missing = {}
for _, field in ipairs({ 'rps', 'burst', 'window' }) do
  if not given[field] and redis.call('HEXISTS', KEYS[1], field) == 0 then
    table.insert(missing, field)
  end
end
if #missing > 0 then
  return missing
end
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return missing
