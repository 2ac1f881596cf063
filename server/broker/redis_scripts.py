"""Lua scripts of the Redis broker; the key layout is in :mod:`server.broker.redis`.

Each script touches only the keys of one Stagewire channel (passed as KEYS,
all in one hash slot), so it runs atomically on one Redis node, cluster or not.
Epoch candidates come from the caller: a script must not depend on randomness
of its own to stay replication-safe, and the caller's ``secrets`` is better.
"""

from __future__ import annotations

# Assign the next offset, keep the publication in history and publish it,
# unless an idempotency key or an expected offset says it is already done.
#
# KEYS[1]  meta hash (o = top offset, e = epoch)
# KEYS[2]  history stream (entry id "<offset>-0", field d = msgpack [data, info])
# KEYS[3]  optional: idempotency key, a string "<offset>:<epoch>"
# ARGV[1]  msgpack [data, info], encoded once by the caller
# ARGV[2]  history size, 0 to keep no history
# ARGV[3]  history TTL in milliseconds
# ARGV[4]  meta TTL in milliseconds (how long the position outlives the last publication)
# ARGV[5]  epoch to use if the channel has none (new or expired stream)
# ARGV[6]  PUBLISH or SPUBLISH
# ARGV[7]  pub/sub channel
# ARGV[8]  expected offset for a compare-and-set publish, "" for none
# ARGV[9]  idempotency key TTL in milliseconds
#
# Returns {offset, epoch, status}: status 0 published, 1 already published
# (offset is the earlier one), 2 the channel is behind the expected offset.
# The message published is the msgpack array [0, offset, epoch, [data, info]]:
# a 4-array header, three items packed here and the caller's bytes appended
# as they are, so data is never re-encoded.
PUBLISH = """
local meta = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, offset = meta[1], tonumber(meta[2])
if not epoch then
  -- A new stream: anything left in the history belongs to a previous epoch.
  epoch, offset = ARGV[5], 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local colon = string.find(seen, ':', 1, true)
    -- A key from an earlier epoch names a publication that is gone.
    if string.sub(seen, colon + 1) == epoch then
      return {tonumber(string.sub(seen, 1, colon - 1)), epoch, 1}
    end
  end
end
if ARGV[8] ~= '' then
  local expected = tonumber(ARGV[8])
  if offset >= expected then return {offset, epoch, 1} end
  if offset ~= expected - 1 then return {offset, epoch, 2} end
end
offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[2] ~= '0' then
  -- Exact trimming: history(size) must hold exactly the newest `size` entries.
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset, 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if KEYS[3] then
  redis.call('SET', KEYS[3], offset .. ':' .. epoch, 'PX', ARGV[9])
end
redis.call(ARGV[6], ARGV[7], '\\148' .. cmsgpack.pack(0, offset, epoch) .. ARGV[1])
return {offset, epoch, 0}
"""

# Make a given position the channel's current one; the history of another
# position is dropped, since its entries would carry the wrong epoch. A
# position the channel has passed in that epoch changes nothing: another node
# restored it first and published since (see Broker, Restore).
#
# KEYS[1]  meta hash, KEYS[2] history stream (as above)
# ARGV[1]  epoch, ARGV[2] offset
# ARGV[3]  meta TTL in milliseconds if the channel had no position
RESTORE = """
local meta = redis.call('HMGET', KEYS[1], 'e', 'o')
if meta[1] == ARGV[1] and tonumber(meta[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'o', ARGV[2])
redis.call('DEL', KEYS[2])
if not meta[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

# Read a channel's position (creating its epoch if it has none) and,
# optionally, a range of its history, in one atomic step so the position
# and the entries always agree.
#
# KEYS[1]  meta hash, KEYS[2] history stream (as above)
# ARGV[1]  epoch to use if the channel has none
# ARGV[2]  meta TTL in milliseconds for a position created here
# ARGV[3]  "1" if the caller gave a `since` position, else "0"
# ARGV[4]  the epoch of `since`
# ARGV[5]  first offset wanted (an entry id without sequence)
# ARGV[6]  how many entries at most; 0 reads the position only
# ARGV[7]  "1" for newest first
#
# Returns {epoch, offset} or {epoch, offset, entries}.
READ = """
local meta = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, offset = meta[1], meta[2]
if not epoch then
  epoch, offset = ARGV[1], '0'
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[6] == '0' or (ARGV[3] == '1' and ARGV[4] ~= epoch) then
  return {epoch, offset}
end
local entries
if ARGV[7] == '1' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', ARGV[5], 'COUNT', ARGV[6])
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[5], '+', 'COUNT', ARGV[6])
end
return {epoch, offset, entries}
"""
