-- Write knob changes with their history on a Redis Cluster, fenced by the writer's lease
-- epoch (see lease.lua): the lease key lives in another slot, so no script can check it here.
-- Instead each hash slot holds, in its own epoch key, the highest epoch that took it over: a
-- new leader raises it in every slot it reads before its first write there, so a stale
-- leader is refused on every throttle of the slot, written since or steady. Each throttle's
-- fence key keeps the highest epoch that wrote it too. One call writes the changes of
-- throttles that share a hash slot; a call with no throttles only raises the slot's epoch.
--
-- KEYS[1]                   the slot's epoch key (regulator:epoch:{<tag of the slot>})
-- KEYS[3k-1], [3k], [3k+1]  throttle k's fence key (throttle:{<name>}:fence), knobs hash and
--                           history stream, every key in the slot of KEYS[1]
-- ARGV[1]  the writer's epoch ('' = not fenced: a store used outside the daemon)
-- ARGV[2]  TTL of knobs, history and fence, in milliseconds
-- ARGV[3]  approximate cap of each history stream (XADD MAXLEN ~)
-- then, per throttle: the number of knob fields, field/value pairs for HSET, the number of
-- history fields, field/value pairs for XADD.
--
-- `repeated` (lua/history_repeated.lua) is prepended when the script is loaded.
--
-- Reply: the number of throttles refused because a writer with a later epoch (a newer
-- leader) has taken the slot or written them: this writer lost the lease, and nothing is
-- written to those. The others are written (0: all of them). A raise by a stale writer
-- answers -1 and changes nothing.
local epoch, ttl, maxlen, a = ARGV[1], ARGV[2], ARGV[3], 4
-- Epochs are decimal integers: longer is larger, and equal lengths compare as text.
local function later(seen)
  return seen and (#seen > #epoch or (#seen == #epoch and seen > epoch))
end
local stale = false
if epoch ~= '' then
  stale = later(redis.call('GET', KEYS[1]))
  if not stale then
    -- Kept without a TTL: at most one small key per slot, and a slot the leader has not
    -- written for a while must still refuse a stale writer.
    redis.call('SET', KEYS[1], epoch)
  end
end
if #KEYS == 1 then
  return stale and -1 or 0
end
local refused = 0
for k = 2, #KEYS, 3 do
  local refuse = stale or (epoch ~= '' and later(redis.call('GET', KEYS[k])))
  local n = tonumber(ARGV[a])
  local fields = a
  a = a + 2 * n + 1
  local m = tonumber(ARGV[a])
  local history = a
  a = a + 2 * m + 1
  if refuse then
    refused = refused + 1
  else
    if epoch ~= '' then
      redis.call('SET', KEYS[k], epoch, 'PX', ttl)
    end
    redis.call('HSET', KEYS[k + 1], unpack(ARGV, fields + 1, fields + 2 * n))
    redis.call('PEXPIRE', KEYS[k + 1], ttl)
    if not repeated(KEYS[k + 2], history, m) then
      redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, history + 1, history + 2 * m))
    end
    redis.call('PEXPIRE', KEYS[k + 2], ttl)
  end
end
return refused
