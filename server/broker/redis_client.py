"""``RedisClient``: one node's connection pool to Redis, shared by the broker and presence.

Built once per node from the ``[broker]`` settings (``create_app`` does it and
closes it last). The broker (:mod:`server.broker.redis`) and the presence
store (:mod:`server.presence.redis`) are given the same client, so a node has
one pool, one error mapping and one name in ``CLIENT LIST``.

Every command goes through :meth:`RedisClient.command`: it waits (at most
``socket_timeout``) for one of ``max_connections`` connections, and turns
"Redis cannot serve this now" into :class:`~server.errors.BrokerUnavailable`.
Nothing is retried behind the caller's back: a publication that may have
reached Redis must not be sent twice, a retried presence ``add`` would report
the wrong transition, and a failure must surface within the timeout.

With ``[broker] cluster_nodes`` set the client is a Redis Cluster client
(``redis.asyncio.cluster.RedisCluster``): each command goes to the master of
its keys' slot, and a ``MOVED``/``ASK`` redirect is followed (the command did
not run), but a lost connection is not retried either; the slot map is
reloaded before the next command. The broker's pipelined commands and its
pub/sub have connections of their own per master
(:meth:`RedisClient.node_connection`, used by :mod:`server.broker.redis_cluster`
and :mod:`server.broker.redis_cluster_commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, AsyncIterator, Iterator, Protocol, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from server.config import BrokerSettings
from server.errors import BrokerUnavailable

C = TypeVar("C", bound=Connection)

# Error replies that mean "not now" rather than "wrong request".
_UNAVAILABLE_REPLIES = (
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)


class RedisClient:
    """The command connections of one node, with a bounded wait for a free one.

    Args:
        settings: the ``[broker]`` settings: URL, key prefix, timeouts and
            ``max_connections``.
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        # Names this node's connections in CLIENT LIST (names cannot hold spaces).
        self.name = "stagewire-" + re.sub(r"[^\x21-\x7e]", "_", settings.prefix)
        # A burst of commands waits (up to socket_timeout) for one of the
        # max_connections instead of failing at once. The wait is a FIFO
        # semaphore of ours: redis-py's BlockingConnectionPool lets busy callers
        # barge ahead, so under sustained load some waiters time out.
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._redis: Redis | RedisCluster | None
        self._cluster_lock = asyncio.Lock()
        self._cluster_started = False
        if settings.cluster:
            self._redis = RedisCluster(
                startup_nodes=[ClusterNode(*_address(node)) for node in settings.cluster_nodes],
                max_connections=settings.max_connections,
                socket_timeout=settings.socket_timeout,
                socket_connect_timeout=settings.socket_timeout,
                retry=Retry(NoBackoff(), 0),
                protocol=2,
                client_name=self.name,
            )
        else:
            self._redis = Redis.from_pool(ConnectionPool.from_url(
                settings.redis_url,
                max_connections=settings.max_connections,
                socket_timeout=settings.socket_timeout,
                socket_connect_timeout=settings.socket_timeout,
                retry=Retry(NoBackoff(), 0),
                protocol=2,
                client_name=self.name,
            ))

    @property
    def address(self) -> str:
        """Where Redis is, for logs: the URL, or the cluster's configured nodes."""
        s = self.settings
        return "Redis Cluster " + ",".join(s.cluster_nodes) if s.cluster else f"Redis at {s.redis_url}"

    @property
    def cluster(self) -> RedisCluster | None:
        """The Redis Cluster client, or None for one Redis."""
        return self._redis if isinstance(self._redis, RedisCluster) else None

    def register_script(self, source: str) -> Script:
        """A Lua script run with EVALSHA (loaded on first use).

        In a cluster pipeline it runs with EVAL: redis-py loads the scripts of
        a plain pipeline beforehand, but not those of a cluster pipeline, and
        a master that never saw the script (or lost it in a restart) would
        answer NOSCRIPT to one call of the batch.
        """
        client = self._client()
        if isinstance(client, RedisCluster):
            return _ClusterScript(client, source)
        return client.register_script(source)

    def node_connection(self, address: str, connection_class: type[C], **extra: Any) -> C:
        """A new, unconnected connection to the cluster node ``host:port``, with the pool's settings."""
        s = self.settings
        host, port = _address(address)
        return connection_class(
            host=host, port=port, socket_timeout=s.socket_timeout, socket_connect_timeout=s.socket_timeout,
            retry=Retry(NoBackoff(), 0), protocol=2, client_name=self.name, **extra,
        )

    def make_connection(self) -> AbstractConnection:
        """A new, unconnected connection with the pool's settings (for pub/sub; one Redis only)."""
        client = self._client()
        if isinstance(client, RedisCluster):
            raise TypeError("a Redis Cluster has one pub/sub connection per master: use node_connection")
        connection: AbstractConnection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    @contextlib.asynccontextmanager
    async def command(self) -> AsyncIterator[Redis | RedisCluster]:
        """The client for one command (or pipeline), once a connection is free; maps Redis errors."""
        client = self._client()
        try:
            async with asyncio.timeout(self.settings.socket_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise BrokerUnavailable("every Redis connection stayed busy") from None
        try:
            with unavailable():
                if isinstance(client, RedisCluster) and not self._cluster_started:
                    await self._start_cluster(client)
                yield client
        finally:
            self._slots.release()

    async def _start_cluster(self, client: RedisCluster) -> None:
        # Load the slot map once, before any command: redis-py lets every command
        # of a burst start the cluster client at once, and the ones that lose the
        # race find their connection closed under them.
        async with self._cluster_lock:
            if not self._cluster_started:
                async with asyncio.timeout(2 * self.settings.socket_timeout):
                    await client.initialize()
                self._cluster_started = True

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _client(self) -> Redis | RedisCluster:
        if self._redis is None:
            raise BrokerUnavailable("the Redis client is closed")
        return self._redis


class Script(Protocol):
    """A registered Lua script: ``await script(keys=..., args=..., client=<client or pipeline>)``."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any: ...


class _ClusterScript(AsyncScript):
    """A script of a cluster client: EVALSHA, but EVAL inside a cluster pipeline."""

    def __init__(self, client: RedisCluster, source: str) -> None:
        super().__init__(client, source)
        self.source = source

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, ClusterPipeline):
            keys, args = list(keys or []), list(args or [])
            # Queued, not awaited: awaiting a cluster pipeline (re)initializes it, emptying its queue.
            return client.eval(self.source, len(keys), *keys, *args)
        return await super().__call__(keys=keys, args=args, client=client)


def _address(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)  # "[::1]:7000" is host ::1


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Turn "Redis cannot serve this now" errors into :class:`~server.errors.BrokerUnavailable`."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"Redis unavailable: {exc}") from exc
    except redis_errors.RedisClusterException as exc:
        if isinstance(exc, (redis_errors.CrossSlotTransactionError, redis_errors.InvalidPipelineStack)):
            raise  # a bug of ours, not an outage
        # No node reachable, a slot served by nobody: the cluster cannot serve now.
        raise BrokerUnavailable(f"Redis Cluster unavailable: {exc}") from exc
    except redis_errors.ResponseError as exc:
        if isinstance(exc, _UNAVAILABLE_REPLIES) or str(exc).startswith(("BUSY", "MASTERDOWN")):
            raise BrokerUnavailable(f"Redis cannot serve now: {exc}") from exc
        raise
