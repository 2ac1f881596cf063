"""Redis helpers shared by the Redis test modules: the URL, admin client, key prefix, a proxy.

The fixtures are imported by the modules that use them; ``RedisProxy`` stands
between a client and Redis so that a test can make Redis go silent or away.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from tests.services import require_redis


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_redis()


@contextlib.asynccontextmanager
async def admin(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"swtest-{secrets.token_hex(4)}"
    yield prefix
    async with admin(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}.*", count=1000)]
        if keys:
            await client.delete(*keys)


class RedisProxy:
    """A TCP proxy in front of Redis that a test can stall (silent) or stop (refusing)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task] = set()
        self._flowing = asyncio.Event()

    async def start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        """Bytes are swallowed from now on, as over a dead network."""
        self._flowing.clear()

    async def stop(self) -> None:
        """Refuse new connections and reset the open ones, as a Redis that went away."""
        self._server.close()
        for transport in self._transports:
            transport.abort()
        self._transports.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self._flowing.is_set():
                    sink.write(data)
        except OSError:
            pass
        finally:
            sink.transport.abort()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    parts = urlsplit(redis_url)
    proxy = RedisProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    await proxy.start()
    yield proxy
    await proxy.stop()


@contextlib.contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# -- keys, TTLs, epochs -------------------------------------------------------------------
