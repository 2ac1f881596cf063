"""``RedisPresence``: presence shared by every Stagewire node through one Redis.

Redis layout, for ``P`` = ``[broker] prefix`` and a Stagewire channel ``C``:

``P.presence.clients.{C}``
    Hash: client id → username.
``P.presence.expiry.{C}``
    Sorted set: client id, scored by its expiry time in milliseconds.
``P.presence.users.{C}``
    Hash: username → number of the user's clients in the channel.
``P.presence.info.{C}``
    Hash: username → member info (JSON text), for entries added with ``info``
    (Pusher's ``user_info``). Written by the same script as the entry, and
    dropped for users who left (only when they are still gone: a user who
    came back meanwhile keeps theirs).

The three keys of a channel share the ``{C}`` hash tag (like the broker's keys),
so each script below touches one hash slot and runs atomically, in Redis
Cluster too. ``add`` and ``remove`` keep the user counts in step with the
clients and report the user-level transition (count 0 → 1 is a join, 1 → 0 a
leave). ``expire`` removes the expired clients of a channel and decrements
their users in one script, so when several nodes sweep the same channel at once
each expired client is removed, and each departed user reported, by exactly one
of them. ``users`` and ``stats`` are read-only scripts that leave expired
entries out of the counts without consuming them: only a sweep reports leaves.

Every write sets the keys' TTL to twice the presence TTL, so a channel that no
live node refreshes or sweeps any more disappears by itself.

**Clock.** Expiry times come from the Redis server's clock (``TIME`` inside
the scripts), not from the nodes' clocks. Every node then compares against the
same clock, so skew between machines cannot make one node expire another's
live clients early or keep dead ones late, and the time of a refresh is the
time Redis applied it. Redis 7 replicates the *effects* of a script, so a
script may read ``TIME`` and then write. In Redis Cluster a channel's keys live
on one shard and so use one clock too.

A refresh extends only entries that still exist (``ZADD XX``): it never brings
back a client that was removed or swept meanwhile. Entries lost with a Redis
restart come back when the clients resubscribe: the restart reset the
channels' streams as well, so the node tells those subscribers to resubscribe
(``unsubscribe`` push with code 2500, see ``server/positions.py``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

from server.broker.redis_client import RedisClient, Script
from server.presence.base import PresenceEntry

# Clients per REFRESH call and most clients one EXPIRE call removes: bounds the
# time one script blocks Redis (the rest goes in the next call or sweep).
BATCH = 500
EXPIRE_BATCH = 5000
# Scripts per pipeline round trip in refresh and expire.
PIPELINE = 1000

# The current Redis time in milliseconds, as `now`.
_NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

# KEYS (every script): clients hash, expiry zset, users hash of one channel.

# ARGV: client, user, TTL ms, key TTL ms. Returns 1 if the user joined.
_ADD = _NOW + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local joined = 0
if old ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if old and redis.call('HINCRBY', KEYS[3], old, -1) <= 0 then
    redis.call('HDEL', KEYS[3], old)  -- a client id reused by another user
  end
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then joined = 1 end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return joined
"""

# ARGV: client. Returns 1 if it was its user's last client (the user left).
_REMOVE = """
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local left = 0
if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
  redis.call('HDEL', KEYS[3], user)
  left = 1
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return left
"""

# ARGV: TTL ms, key TTL ms, clients... Pushes back the expiry of those still present.
_REFRESH = _NOW + """
local expires = now + tonumber(ARGV[1])
local zadd = {}
for i = 3, #ARGV do
  zadd[#zadd + 1] = expires
  zadd[#zadd + 1] = ARGV[i]
end
if #zadd > 0 then redis.call('ZADD', KEYS[2], 'XX', unpack(zadd)) end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 0
"""

# ARGV: most clients to remove. Returns the users whose last client expired.
_EXPIRE = _NOW + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local gone = {}
for _, client in ipairs(expired) do
  local user = redis.call('HGET', KEYS[1], client)
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
  if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    gone[#gone + 1] = user
  end
end
if #expired > 0 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return gone
"""

# Read-only. ARGV: "users" → flat {user, count, ...}; "stats" → {clients, users}.
# Clients past their expiry are left out of the counts (the sweep removes them).
_READ = "#!lua flags=no-writes\n" + _NOW + """
local expired = {}
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local user = redis.call('HGET', KEYS[1], client)
  if user then expired[user] = (expired[user] or 0) + 1 end
end
if ARGV[1] == 'stats' then
  local users = redis.call('HLEN', KEYS[3])
  for user, n in pairs(expired) do
    if tonumber(redis.call('HGET', KEYS[3], user) or 0) <= n then users = users - 1 end
  end
  return {redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'), users}
end
local all, live = redis.call('HGETALL', KEYS[3]), {}
for i = 1, #all, 2 do
  local n = tonumber(all[i + 1]) - (expired[all[i]] or 0)
  if n > 0 then
    live[#live + 1] = all[i]
    live[#live + 1] = n
  end
end
return live
"""


# KEYS: the three above plus the info hash. ARGV: as _ADD, then the info. Adds
# the entry exactly as _ADD does and stores the user's info in the same step.
_ADD_INFO = _ADD.replace("return joined", "") + """
redis.call('HSET', KEYS[4], ARGV[2], ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return joined
"""

# KEYS: users hash, info hash. ARGV: users who left. Drops the info of those
# still absent; returns nothing.
_DROP_INFO = """
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return 0
"""

# Read-only. Flat {user, info or false, ...} of the present users (expired
# clients left out, as in _READ). KEYS: the three above plus the info hash.
_MEMBERS = "#!lua flags=no-writes\n" + _NOW + """
local expired = {}
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local user = redis.call('HGET', KEYS[1], client)
  if user then expired[user] = (expired[user] or 0) + 1 end
end
local all, out = redis.call('HGETALL', KEYS[3]), {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) - (expired[all[i]] or 0) > 0 then
    out[#out + 1] = all[i]
    out[#out + 1] = redis.call('HGET', KEYS[4], all[i]) or false
  end
end
return out
"""


class RedisPresence:
    """A :class:`~server.presence.base.PresenceStore` in Redis; one instance per node.

    Args:
        client: the node's Redis client, shared with the broker; its settings
            give the key prefix, ``presence_ttl`` and ``socket_timeout``.

    Every operation either completes within ``socket_timeout`` (plus the wait
    for a free connection, bounded the same way) or raises
    :class:`~server.errors.BrokerUnavailable`; nothing is retried behind
    the caller's back, since a retried ``add`` or ``remove`` would report
    the wrong transition.
    """

    def __init__(self, client: RedisClient) -> None:
        settings = client.settings
        self._client = client
        self._prefix = settings.prefix
        self._ttl_ms = max(1, int(settings.presence_ttl * 1000))
        # Long enough for a live node's sweep to find every expired entry first.
        self._key_ttl_ms = 2 * self._ttl_ms
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._refresh = client.register_script(_REFRESH)
        self._expire = client.register_script(_EXPIRE)
        self._read = client.register_script(_READ)
        self._add_info = client.register_script(_ADD_INFO)
        self._drop_info = client.register_script(_DROP_INFO)
        self._members = client.register_script(_MEMBERS)

    async def add(self, entry: PresenceEntry) -> bool:
        if entry.info is not None:
            return await self._add_member(entry)
        async with self._client.command() as client:
            joined = await self._add(
                keys=self._keys(entry.channel),
                args=[entry.client, entry.user, self._ttl_ms, self._key_ttl_ms],
                client=client,
            )
        return bool(joined == 1)

    async def remove(self, entry: PresenceEntry) -> bool:
        async with self._client.command() as client:
            left = await self._remove(keys=self._keys(entry.channel), args=[entry.client], client=client)
        if left == 1:
            await self._forget_info({entry.channel: [entry.user]})
        return bool(left == 1)

    async def remove_many(self, entries: Sequence[PresenceEntry]) -> list[bool]:
        entries = list(entries)
        replies = await self._pipelined(self._remove, [(self._keys(e.channel), [e.client]) for e in entries])
        left = [reply == 1 for reply in replies]
        gone: dict[str, list[str]] = defaultdict(list)
        for entry, last in zip(entries, left):
            if last:
                gone[entry.channel].append(entry.user)
        if gone:
            await self._forget_info(gone)
        return left

    async def refresh(self, entries: Iterable[PresenceEntry]) -> None:
        by_channel: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_channel[entry.channel].append(entry.client)
        calls = [
            (self._keys(channel), [self._ttl_ms, self._key_ttl_ms, *clients[i:i + BATCH]])
            for channel, clients in by_channel.items()
            for i in range(0, len(clients), BATCH)
        ]
        await self._pipelined(self._refresh, calls)

    async def expire(self, channels: Iterable[str]) -> list[tuple[str, str]]:
        channels = list(channels)
        replies = await self._pipelined(self._expire, [(self._keys(c), [EXPIRE_BATCH]) for c in channels])
        gone = [(channel, user.decode()) for channel, users in zip(channels, replies) for user in users]
        if gone:
            left: dict[str, list[str]] = defaultdict(list)
            for channel, user in gone:
                left[channel].append(user)
            await self._forget_info(left)
        return gone

    async def users(self, channel: str) -> dict[str, int]:
        async with self._client.command() as client:
            flat = await self._read(keys=self._keys(channel), args=["users"], client=client)
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def stats(self, channel: str) -> tuple[int, int]:
        async with self._client.command() as client:
            clients, users = await self._read(keys=self._keys(channel), args=["stats"], client=client)
        return int(clients), int(users)

    async def members(self, channel: str) -> dict[str, str | None]:
        async with self._client.command() as client:
            flat = await self._members(keys=self._member_keys(channel), args=[], client=client)
        return {flat[i].decode(): flat[i + 1].decode() if flat[i + 1] else None for i in range(0, len(flat), 2)}

    async def close(self) -> None:
        """Nothing of its own to release: the client belongs to the node."""

    # -- internals ------------------------------------------------------------------

    def _keys(self, channel: str) -> list[str]:
        tag = f"{{{channel}}}"
        p = self._prefix
        return [f"{p}.presence.clients.{tag}", f"{p}.presence.expiry.{tag}", f"{p}.presence.users.{tag}"]

    def _member_keys(self, channel: str) -> list[str]:
        """The channel's keys with its info hash last (same hash tag, same slot)."""
        return [*self._keys(channel), f"{self._prefix}.presence.info.{{{channel}}}"]

    async def _add_member(self, entry: PresenceEntry) -> bool:
        async with self._client.command() as client:
            joined = await self._add_info(
                keys=self._member_keys(entry.channel),
                args=[entry.client, entry.user, self._ttl_ms, self._key_ttl_ms, entry.info or "null"],
                client=client,
            )
        return bool(joined == 1)

    async def _forget_info(self, left: dict[str, list[str]]) -> None:
        """Drop the info of users who left (kept if they came back meanwhile)."""
        calls = [([keys[2], keys[3]], users) for channel, users in left.items()
                 for keys in [self._member_keys(channel)]]
        await self._pipelined(self._drop_info, calls)

    async def _pipelined(self, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per ``(keys, args)``, a pipeline round trip per ``PIPELINE`` calls."""
        replies: list[Any] = []
        for start in range(0, len(calls), PIPELINE):
            async with self._client.command() as client:
                pipe = client.pipeline(transaction=False)
                for keys, args in calls[start:start + PIPELINE]:
                    await script(keys=keys, args=args, client=pipe)
                replies.extend(await pipe.execute())
        return replies
