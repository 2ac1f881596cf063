"""``RedisBroker``: the broker for any number of Stagewire nodes sharing one Redis.

Redis layout, for ``P`` = ``[broker] prefix`` and a Stagewire channel ``C``:

``P.meta.{C}``
    Hash: ``o`` the top offset, ``e`` the epoch. Expires ``max(meta_ttl, ttl)``
    after the channel's last publication; a new epoch starts after that.
``P.stream.{C}``
    Stream of the newest ``history.size`` publications: entry id
    ``<offset>-0``, field ``d`` = msgpack ``[data, info]``. Expires
    ``history.ttl`` after the last publication. Not kept when size is 0.
``P.idem.{C}.<key>``
    String ``<offset>:<epoch>`` of the publication made with an idempotency
    key; expires after ``IDEMPOTENCY_TTL``.
``P.pub.{C}``
    Pub/sub channel of ``C``: msgpack ``[0, offset, epoch, [data, info]]`` for a
    publication, ``[1, kind, info]`` for a join or leave, in one order.
``P.control``
    Pub/sub channel every node holds, carrying msgpack control messages.

The braces make ``C`` the hash tag, so in Redis Cluster the keys and the
sharded pub/sub channel of one Stagewire channel share one slot, as the
publish script and SPUBLISH require. A node subscribes only to the channels
its hub holds, spread over ``pubsub_shards`` connections
(:mod:`server.broker.redis_pubsub`, which also owns reconnecting). Publishing
is one Lua script (:mod:`server.broker.redis_scripts`): offset, epoch, history
and PUBLISH happen atomically, so no two nodes hand out the same offset and
every node sees a channel in offset order.

Publishes, reads of positions and history, and presence and control messages
go through one :class:`~server.broker.redis_pipeline.CommandPipeline`: what
the node issues in one loop iteration, from any number of connections, is one
round trip, and publishes started in order are numbered in that order (the
command is queued before ``publish`` first suspends).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import zlib
from typing import Any, Sequence

import msgpack
from redis.exceptions import NoScriptError

from server.broker import redis_scripts
from server.broker.base import (
    IDEMPOTENCY_TTL,
    BrokerHandler,
    BrokerUnavailable,
    HistoryOptions,
    OffsetConflict,
    Publication,
    StreamPosition,
)
from server.broker.redis_client import RedisClient, unavailable
from server.broker.redis_cluster import ClusterPubSub
from server.broker.redis_cluster_commands import ClusterCommandPipeline
from server.broker.redis_pipeline import CommandPipeline
from server.broker.redis_pubsub import CLASSIC, SHARDED, PubSubShard, Timing

log = logging.getLogger("stagewire.broker.redis")

_PUBLICATION, _PRESENCE = 0, 1  # message kinds on a channel's pub/sub channel
_ALREADY, _CONFLICT = 1, 2  # statuses of the publish script besides 0, published
_CONTROL = object()  # what the control channel is held with, instead of a channel name
# Meta TTL of a position created by a read, before any publication sets its own.
_DEFAULT_META_TTL_MS = int(HistoryOptions().meta_ttl * 1000)


class RedisBroker:
    """A :class:`~server.broker.base.Broker` on Redis; one instance per node.

    Args:
        client: the node's Redis client (shared with presence); its settings
            give the key prefix, pub/sub shards and mode, timeouts and
            reconnect backoff. The broker does not close it.
    """

    def __init__(self, client: RedisClient) -> None:
        settings = client.settings
        self._client = client
        self._settings = settings
        self._prefix = settings.prefix
        self._mode = SHARDED if settings.sharded else CLASSIC
        self._publish_command = "SPUBLISH" if settings.sharded else "PUBLISH"
        self._control = f"{settings.prefix}.control".encode()
        self.client_name = client.name
        self._shards: list[PubSubShard | ClusterPubSub] = []
        self._handler: BrokerHandler | None = None
        self._pipeline: CommandPipeline | ClusterCommandPipeline | None = None

    @property
    def healthy(self) -> bool:
        return bool(self._shards) and all(shard.healthy for shard in self._shards)

    @property
    def reconnects(self) -> int:
        """Pub/sub connections re-established after a loss, over all shards (for /metrics)."""
        return sum(shard.reconnects for shard in self._shards)

    @property
    def round_trips(self) -> int:
        """Batches of commands written to Redis so far (for tests and benchmarks)."""
        return self._pipeline.batches if self._pipeline is not None else 0

    async def start(self, handler: BrokerHandler) -> None:
        """Connect and subscribe to the control channel.

        Returns after the first connection attempt of every pub/sub connection.
        If Redis is unreachable it logs a warning and keeps reconnecting in the
        background: ``healthy`` stays False and operations raise
        :class:`BrokerUnavailable` until Redis is back.
        """
        s = self._settings
        self._handler = handler
        timing = Timing(
            confirm_timeout=2 * s.socket_timeout,
            ping_interval=s.ping_interval,
            min_delay=s.reconnect_min_delay,
            max_delay=s.reconnect_max_delay,
        )
        if self._client.cluster is not None:
            # A connection per master, each command and channel on its slot's (server/broker/redis_cluster.py).
            self._pipeline = ClusterCommandPipeline(self._client)
            self._shards = [ClusterPubSub(self._client, timing, self._deliver, self._gap)]
        else:
            self._pipeline = CommandPipeline(self._client.make_connection)
            self._shards = [
                PubSubShard(str(i), self._client.make_connection, self._mode, timing, self._deliver, self._gap)
                for i in range(max(1, s.pubsub_shards))
            ]
        self._shards[0].hold(self._control, _CONTROL)
        for shard in self._shards:
            shard.start()
        await asyncio.gather(*(shard.settled.wait() for shard in self._shards))
        if not self.healthy:
            log.warning("%s is unreachable; retrying in the background", self._client.address)

    async def close(self) -> None:
        shards, self._shards = self._shards, []
        await asyncio.gather(*(shard.close() for shard in shards))
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            await pipeline.close()
        self._handler = None

    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(self._pub_name(channel).encode(), channel)

    async def unsubscribe(self, channel: str) -> None:
        self._shard(channel).unsubscribe(self._pub_name(channel).encode())

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: dict[str, Any] | None = None,
        history: HistoryOptions = HistoryOptions(),
        idempotency_key: str | None = None,
        expected_offset: int | None = None,
    ) -> StreamPosition:
        keys = self._keys(channel)
        if idempotency_key is not None:
            keys.append(f"{self._prefix}.idem.{{{channel}}}.{idempotency_key}")
        keep = history.size if history.size > 0 and history.ttl > 0 else 0
        offset, epoch, status = await self._script(_PUBLISH, keys, [
            msgpack.packb([data, info]),
            keep,
            _ms(history.ttl),
            _ms(max(history.meta_ttl, history.ttl)),
            _new_epoch(),
            self._publish_command,
            self._pub_name(channel),
            "" if expected_offset is None else expected_offset,
            _ms(IDEMPOTENCY_TTL),
        ])
        if status == _CONFLICT:
            raise OffsetConflict(StreamPosition(offset, epoch.decode()))
        return StreamPosition(offset, epoch.decode(), already=status == _ALREADY)

    async def restore_position(self, channel: str, position: StreamPosition) -> None:
        await self._script(_RESTORE, self._keys(channel), [position.epoch, position.offset, _DEFAULT_META_TTL_MS])

    async def publish_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        # Same pub/sub channel as the publications, so nodes see both in one order.
        payload = msgpack.packb([_PRESENCE, kind, info])
        await self._execute(self._publish_command, self._pub_name(channel), payload)

    async def publish_control(self, message: dict[str, Any]) -> None:
        await self._execute(self._publish_command, self._control, msgpack.packb(message))

    async def position(self, channel: str) -> StreamPosition:
        position, _ = await self._read(channel, None, 0, False)
        return position

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        position, entries = await self._read(channel, since, max(limit, 0), reverse)
        pubs = []
        for entry_id, fields in entries:
            data, info = _unpack(fields[1])
            pubs.append(Publication(channel, int(entry_id.split(b"-", 1)[0]), position.epoch, data, info))
        return pubs, position

    # -- internals ------------------------------------------------------------------

    async def _read(
        self, channel: str, since: StreamPosition | None, limit: int, reverse: bool
    ) -> tuple[StreamPosition, list[Any]]:
        reply = await self._script(_READ, self._keys(channel), [
            _new_epoch(),
            _DEFAULT_META_TTL_MS,
            1 if since is not None else 0,
            since.epoch if since is not None else "",
            since.offset + 1 if since is not None else 0,
            limit,
            1 if reverse else 0,
        ])
        return StreamPosition(int(reply[1]), reply[0].decode()), (reply[2] if len(reply) > 2 else [])

    async def _execute(self, *args: Any) -> Any:
        """One command through the pipeline; queued before the first suspension."""
        if self._pipeline is None:
            raise BrokerUnavailable("the Redis broker is not started")
        with unavailable():
            return await self._pipeline.submit(*args)

    async def _script(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis lost its script cache (a restart): EVAL runs and caches it again.
            # Nothing ran, so this is no retry of a command that may have run.
            return await self._execute("EVAL", script.source, len(keys), *keys, *args)

    def _keys(self, channel: str) -> list[str]:
        return [f"{self._prefix}.meta.{{{channel}}}", f"{self._prefix}.stream.{{{channel}}}"]

    def _pub_name(self, channel: str) -> str:
        return f"{self._prefix}.pub.{{{channel}}}"

    def _shard(self, channel: str) -> PubSubShard | ClusterPubSub:
        if not self._shards:
            raise BrokerUnavailable("the Redis broker is not started")
        # crc32 rather than hash(): stable across processes and restarts.
        return self._shards[zlib.crc32(channel.encode()) % len(self._shards)]

    def _deliver(self, key: Any, payload: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        message = _unpack(payload)
        if key is _CONTROL:
            handler.on_control(message)
        elif message[0] == _PUBLICATION:
            _, offset, epoch, (data, info) = message
            handler.on_publication(Publication(key, offset, epoch, data, info))
        elif message[0] == _PRESENCE:
            handler.on_presence(message[1], key, message[2])

    def _gap(self, keys: Sequence[Any]) -> None:
        if self._handler is not None and any(key is _CONTROL for key in keys):
            log.warning("Redis pub/sub reconnected; control messages may have been missed")
            self._handler.on_control_gap()
        channels = [key for key in keys if key is not _CONTROL]
        if channels and self._handler is not None:
            log.warning("Redis pub/sub reconnected; publications may have been missed on %d channel(s)", len(channels))
            self._handler.on_gap(channels)


class _Script:
    """A Lua script and its SHA1, run with EVALSHA."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_PUBLISH = _Script(redis_scripts.PUBLISH)
_READ = _Script(redis_scripts.READ)
_RESTORE = _Script(redis_scripts.RESTORE)


def _unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


def _new_epoch() -> str:
    return secrets.token_hex(6)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
