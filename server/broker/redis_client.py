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
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import AsyncIterator, Iterator

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from server.config import BrokerSettings
from server.errors import BrokerUnavailable

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
        self._redis: Redis | None = Redis.from_pool(ConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.max_connections,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.socket_timeout,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
            client_name=self.name,
        ))

    def register_script(self, source: str) -> AsyncScript:
        """A Lua script run with EVALSHA (loaded on first use)."""
        return self._client().register_script(source)

    def make_connection(self) -> AbstractConnection:
        """A new, unconnected connection with the pool's settings (for pub/sub)."""
        connection: AbstractConnection = self._client().connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    @contextlib.asynccontextmanager
    async def command(self) -> AsyncIterator[Redis]:
        """The client for one command (or pipeline), once a connection is free; maps Redis errors."""
        client = self._client()
        try:
            async with asyncio.timeout(self.settings.socket_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise BrokerUnavailable("every Redis connection stayed busy") from None
        try:
            with unavailable():
                yield client
        finally:
            self._slots.release()

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _client(self) -> Redis:
        if self._redis is None:
            raise BrokerUnavailable("the Redis client is closed")
        return self._redis


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Turn "Redis cannot serve this now" errors into :class:`~server.errors.BrokerUnavailable`."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"Redis unavailable: {exc}") from exc
    except redis_errors.ResponseError as exc:
        if isinstance(exc, _UNAVAILABLE_REPLIES) or str(exc).startswith(("BUSY", "MASTERDOWN")):
            raise BrokerUnavailable(f"Redis cannot serve now: {exc}") from exc
        raise
