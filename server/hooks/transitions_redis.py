"""``RedisTransitions``: the :class:`~server.hooks.transitions.TransitionStore` of a cluster.

Redis layout, for ``P`` = ``[broker] prefix``, a channel ``C`` and an item
field ``F`` (``c`` for the channel itself, ``m\\n<user>`` for a member):

``P.hooks.holders.{C}``
    Hash: ``F\\n<node>`` → 1 for every node holding the item.
``P.hooks.counts.{C}``
    Hash: ``F`` → how many nodes hold it.
``P.hooks.state.{C}``
    Hash: ``F`` → ``0`` while reported present, or the deadline (ms) of its grace.
``P.hooks.pending``
    Sorted set: ``C\\nF``, scored by the time to look at it again (a deadline,
    or the end of a node's claim on it).
``P.hooks.alive``
    Sorted set: node id, scored by the time its liveness runs out.
``P.hooks.index.<node>``
    Set: ``C\\nF`` of every item the node holds, so that its holds can be
    released for it when it dies.

The three keys of a channel share the ``{C}`` hash tag, so the scripts that
decide (hold, release, settle) touch one hash slot and run atomically, in
Redis Cluster too; like the presence store (:mod:`server.presence.redis`)
they read the time from Redis (``TIME``), one clock for every node.

* **hold** adds the node's holder entry and marks the item present; it
  reports the item when it was not present (nor in its grace) before.
* **release** drops the holder entry; when no holder is left it starts the
  grace (state = deadline) and returns the deadline, which the caller adds
  to the pending set. A release that finds the grace already running returns
  its deadline again, so a retried release never loses it.
* **settle** runs on items claimed from the pending set: if the grace ran out
  and nobody holds the item, it clears the state and says "report it gone".
  The state is cleared in the same script, so however many nodes settle the
  same item, one reports it. A claim pushes the item's pending score forward
  instead of removing it, so an item claimed by a node that died is claimed
  again later.
* **heartbeat** refreshes this node in the alive set and lists the nodes
  whose liveness ran out; their indexed holds are released for them (each
  release is idempotent, so two nodes doing it at once is harmless).
"""

from __future__ import annotations

from typing import Any, Sequence

from server.broker.redis_client import RedisClient
from server.hooks.transitions import Item, Op

# Most pending items one settle call claims, and how long a claim lasts.
CLAIM_LIMIT = 500
CLAIM_MS = 30_000
PIPELINE = 1000

_NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

# KEYS: holders, counts, state (one channel). ARGV: field, node. Returns 1 to report "present".
_HOLD = """
if redis.call('HSETNX', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2], 1) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
local state = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], '0')
if state then return 0 end
return 1
"""

# KEYS: holders, counts, state. ARGV: field, node, grace ms. Returns the grace's deadline, or 0.
_RELEASE = _NOW + """
if redis.call('HDEL', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local state = redis.call('HGET', KEYS[3], ARGV[1])
if not state then return 0 end
if state == '0' then
  state = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[1], state)
end
return tonumber(state)
"""

# KEYS: holders, counts, state. ARGV: field. Returns 1 to report "gone", 0, or a later deadline.
_SETTLE = _NOW + """
local state = redis.call('HGET', KEYS[3], ARGV[1])
if not state or state == '0' then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], '0')
  return 0
end
if tonumber(state) > now then return tonumber(state) end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# KEYS: pending. ARGV: limit, claim ms. Returns {claim score, items...}.
_CLAIM = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local claimed = now + tonumber(ARGV[2])
for _, item in ipairs(due) do redis.call('ZADD', KEYS[1], claimed, item) end
table.insert(due, 1, claimed)
return due
"""

# KEYS: pending. ARGV: claim score, items... Removes those still scored by our claim.
_DONE = """
for i = 2, #ARGV do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or -1) == tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
"""

# KEYS: alive. ARGV: node, TTL ms. Returns {1 if the node was not there, dead nodes...}.
_HEARTBEAT = _NOW + """
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
local out = {added}
for _, node in ipairs(dead) do
  if node ~= ARGV[1] then out[#out + 1] = node end
end
return out
"""


def _field(user: str | None) -> str:
    return "c" if user is None else "m\n" + user


def _member(item: Item) -> str:
    return item[0] + "\n" + _field(item[1])


def _item(member: bytes | str) -> Item:
    text = member.decode() if isinstance(member, bytes) else member
    channel, field = text.split("\n", 1)
    return (channel, None) if field == "c" else (channel, field[2:])


class RedisTransitions:
    """One node's view of the cluster's transitions; see the module docstring.

    Args:
        client: the node's Redis client (shared with the broker and presence).
        node_id: this node's id.
        grace: seconds an item waits after its last release before it is reported gone.
        ttl: seconds this node stays alive without a heartbeat (``[broker] presence_ttl``).
    """

    def __init__(self, client: RedisClient, node_id: str, grace: float, ttl: float) -> None:
        self._client = client
        self._node = node_id
        self._grace_ms = int(grace * 1000)
        self._ttl_ms = max(1, int(ttl * 1000))
        prefix = client.settings.prefix
        self._prefix = prefix
        self._pending = f"{prefix}.hooks.pending"
        self._alive = f"{prefix}.hooks.alive"
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self._settle = client.register_script(_SETTLE)
        self._claim = client.register_script(_CLAIM)
        self._done = client.register_script(_DONE)
        self._heartbeat = client.register_script(_HEARTBEAT)

    def _keys(self, channel: str) -> list[str]:
        tag, p = f"{{{channel}}}", self._prefix
        return [f"{p}.hooks.holders.{tag}", f"{p}.hooks.counts.{tag}", f"{p}.hooks.state.{tag}"]

    def _index(self, node: str) -> str:
        return f"{self._prefix}.hooks.index.{node}"

    async def start(self) -> None:
        async with self._client.command() as client:
            await self._heartbeat(keys=[self._alive], args=[self._node, self._ttl_ms], client=client)

    async def apply(self, ops: Sequence[Op]) -> list[bool]:
        index = self._index(self._node)
        results: list[bool] = []
        deadlines: list[tuple[int, str]] = []
        for start in range(0, len(ops), PIPELINE):
            chunk = ops[start:start + PIPELINE]
            async with self._client.command() as client:
                pipe = client.pipeline(transaction=False)
                for hold, item in chunk:
                    member = _member(item)
                    if hold:
                        pipe.sadd(index, member)
                        await self._hold(keys=self._keys(item[0]), args=[_field(item[1]), self._node], client=pipe)
                    else:
                        await self._release(keys=self._keys(item[0]),
                                            args=[_field(item[1]), self._node, self._grace_ms], client=pipe)
                        pipe.srem(index, member)
                replies = await pipe.execute()
            # Each op queued two commands: the script's reply is first for a release, second for a hold.
            for i, (hold, item) in enumerate(chunk):
                reply = replies[2 * i + 1] if hold else replies[2 * i]
                results.append(bool(hold and int(reply) == 1))
                if not hold and int(reply) > 0:
                    deadlines.append((int(reply), _member(item)))
        await self._index_pending(deadlines)
        return results

    async def settle(self) -> list[Item]:
        async with self._client.command() as client:
            claimed = await self._claim(keys=[self._pending], args=[CLAIM_LIMIT, CLAIM_MS], client=client)
        score, members = int(claimed[0]), [m.decode() for m in claimed[1:]]
        if not members:
            return []
        replies = await self._pipelined(
            [(self._settle, self._keys(_item(m)[0]), [_field(_item(m)[1])]) for m in members]
        )
        gone: list[Item] = []
        done: list[str] = []
        later: list[tuple[int, str]] = []
        for member, reply in zip(members, replies):
            reply = int(reply)
            if reply == 1:
                gone.append(_item(member))
                done.append(member)
            elif reply == 0:
                done.append(member)
            else:
                later.append((reply, member))
        async with self._client.command() as client:
            pipe = client.pipeline(transaction=False)
            if done:
                await self._done(keys=[self._pending], args=[score, *done], client=pipe)
            for deadline, member in later:
                pipe.zadd(self._pending, {member: deadline})
            await pipe.execute()
        return gone

    async def heartbeat(self) -> bool:
        async with self._client.command() as client:
            reply = await self._heartbeat(keys=[self._alive], args=[self._node, self._ttl_ms], client=client)
        added, dead = int(reply[0]), [n.decode() for n in reply[1:]]
        for node in dead:
            await self._reap(node)
        return added == 0

    async def close(self) -> list[Item]:
        async with self._client.command() as client:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self._alive, self._node)
            pipe.delete(self._index(self._node))
            await pipe.execute()
        return []

    # -- internals ------------------------------------------------------------------------

    async def _reap(self, node: str) -> None:
        """Release every hold of a dead node for it, then forget the node."""
        index = self._index(node)
        async with self._client.command() as client:
            members = [m.decode() if isinstance(m, bytes) else m for m in await client.smembers(index)]
        calls: list[tuple[Any, list[str], list[Any]]] = []
        for member in members:
            channel, user = _item(member)
            calls.append((self._release, self._keys(channel), [_field(user), node, self._grace_ms]))
        replies = await self._pipelined(calls)
        await self._index_pending([(int(r), m) for r, m in zip(replies, members) if int(r) > 0])
        async with self._client.command() as client:
            pipe = client.pipeline(transaction=False)
            pipe.delete(index)
            pipe.zrem(self._alive, node)
            await pipe.execute()

    async def _index_pending(self, deadlines: list[tuple[int, str]]) -> None:
        for start in range(0, len(deadlines), PIPELINE):
            async with self._client.command() as client:
                await client.zadd(self._pending, {m: d for d, m in deadlines[start:start + PIPELINE]})

    async def _pipelined(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        replies: list[Any] = []
        for start in range(0, len(calls), PIPELINE):
            async with self._client.command() as client:
                pipe = client.pipeline(transaction=False)
                for script, keys, args in calls[start:start + PIPELINE]:
                    await script(keys=keys, args=args, client=pipe)
                replies.extend(await pipe.execute())
        return replies
