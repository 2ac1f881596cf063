"""``CommandPipeline``: one Redis connection on which commands are pipelined per loop tick.

Every command submitted during one event-loop iteration, from any number of
tasks (client connections, the HTTP API, the durable writer), is written to
Redis in one ``write`` and so costs one round trip together. The next batch is
written as soon as it is ready, without waiting for the replies of the one
before: replies are read by a second task, in order, and each resolves the
future of its command.

Order is the point. Commands reach Redis in the order they were submitted, and
Redis runs the commands of one connection in that order; so two publishes
submitted one after the other get their offsets in that order even though
neither waited for the other's reply.

Failure: a command whose connection was lost before its reply came back fails
with :class:`~server.errors.BrokerUnavailable` (it may or may not have run, so
nothing is resent). The next batch connects again. An error reply of one
command (``NOSCRIPT``, say) is that command's exception only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

from server.errors import BrokerUnavailable

log = logging.getLogger("stagewire.broker.redis")

_Command = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class CommandPipeline:
    """Pipelines commands on one connection of its own.

    Args:
        connect: makes a new, unconnected redis-py connection (RESP2); its
            ``socket_timeout`` bounds the wait for each reply.
        label: names the pipeline in logs.
    """

    def __init__(self, connect: Callable[[], AbstractConnection], label: str = "commands") -> None:
        self._connect = connect
        self._label = label
        self._queue: list[_Command] = []
        self._inflight: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._ready = asyncio.Event()  # something waits in _queue
        self._replies_due = asyncio.Event()  # something waits in _inflight
        self._conn: AbstractConnection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # round trips started (for tests and benchmarks)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for the next batch; the future gets its reply.

        Synchronous on purpose: commands submitted in order are sent in order.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(BrokerUnavailable("the Redis broker is closed"))
            return future
        self._queue.append((args, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name=f"redis-{self._label}-writer")
        self._ready.set()
        return future

    async def execute(self, *args: Any) -> Any:
        """Submit one command and wait for its reply."""
        return await self.submit(*args)

    async def close(self) -> None:
        self._closed = True
        for task in (self._writer, self._reader):
            if task is not None:
                # Cancel until it ends: on Python 3.11 asyncio.wait_for, which
                # redis-py uses for every write, may swallow one cancellation.
                while not task.done():
                    task.cancel()
                    await asyncio.wait([task], timeout=0.1)
        self._writer = self._reader = None
        queued, self._queue = self._queue, []
        self._fail([future for _, future in queued], "the Redis broker is closed")
        await self._drop("the Redis broker is closed")

    # -- the connection -------------------------------------------------------------

    async def _write_forever(self) -> None:
        while True:
            await self._ready.wait()
            # Let every task that is ready in this loop iteration submit too:
            # whatever they issue goes out in the same write.
            await asyncio.sleep(0)
            self._ready.clear()
            batch, self._queue = self._queue, []
            batch = [(args, future) for args, future in batch if not future.cancelled()]
            if not batch:
                continue
            try:
                conn = await self._connection()
                # Registered before the write: a reply may come back before it returns.
                self._inflight.extend(future for _, future in batch)
                self._replies_due.set()
                self.batches += 1
                await conn.send_packed_command(conn.pack_commands(args for args, _ in batch), check_health=False)
            except asyncio.CancelledError:
                self._fail([future for _, future in batch], "the Redis broker is closed")
                raise
            except Exception as exc:
                self._fail([future for _, future in batch], f"Redis unavailable: {exc}")
                await self._drop(f"Redis unavailable: {exc}")

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is not None and conn.is_connected:
            # Idle, anything readable means the server closed it (or it is out
            # of step): reconnect now rather than lose the batch to it.
            if self._inflight or not await _dirty(conn):
                return conn
        await self._drop("Redis connection lost")
        conn = self._connect()
        await conn.connect()  # type: ignore[no-untyped-call]
        self._conn = conn
        self._reader = asyncio.create_task(self._read_forever(conn), name=f"redis-{self._label}-reader")
        return conn

    async def _read_forever(self, conn: AbstractConnection) -> None:
        try:
            while True:
                await self._replies_due.wait()
                if not self._inflight:
                    self._replies_due.clear()
                    continue
                try:
                    reply: Any = await conn.read_response(disconnect_on_error=False)
                except redis_errors.ResponseError as exc:
                    reply = exc  # one command's error; the connection is fine
                future = self._inflight.popleft()
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("Redis %s: connection lost: %s", self._label, exc)
            if self._conn is conn:
                self._reader = None  # this task ends here; _drop must not wait for it
                await self._drop(f"Redis unavailable: {exc}")

    async def _drop(self, reason: str) -> None:
        """Forget the connection; commands waiting for a reply on it fail."""
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        inflight = list(self._inflight)
        self._inflight.clear()
        self._fail(inflight, reason)
        if conn is not None:
            await conn.disconnect(nowait=True)

    @staticmethod
    def _fail(futures: list[asyncio.Future[Any]], reason: str) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(BrokerUnavailable(reason))


async def _dirty(conn: AbstractConnection) -> bool:
    """Whether an idle connection has something to read: a reply out of step, or the server's close.

    redis-py before 8.2 reports a closed connection as readable; 8.2 raises
    ``ConnectionError`` for it (and ``OSError`` for a parser already shut).
    """
    try:
        return bool(await conn.can_read())
    except (redis_errors.ConnectionError, OSError):
        return True
