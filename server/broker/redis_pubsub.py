"""Pub/sub connections of the Redis broker: one ``PubSubShard`` per connection.

A shard owns one Redis connection in subscribed mode and the set of Redis
channels it should hold. Its supervisor task connects, subscribes to every held
channel in one command, then reads until the connection fails, and starts over
after a capped, jittered exponential backoff. Channels that were held while the
connection was down are reported through ``on_gap`` once Redis has confirmed
them again, because publications may have been missed meanwhile; only then is
the shard healthy again.

Subscribe and unsubscribe requests made in the same event-loop iteration go out
as one (S)SUBSCRIBE / (S)UNSUBSCRIBE command. ``subscribe`` returns when Redis
has confirmed the channel, so a publication made after that is delivered.
Messages of a channel are delivered only while it is held: an unsubscribe takes
effect at once, even before Redis confirms it.

Batched delivery: the read loop collects every message already read from the
socket before it waits for more (reading what is buffered never yields to the
event loop), and hands them to ``on_message`` together, in order, from one
callback of the next loop iteration. The connection writers flush after that
(:class:`~server.writer.FlushScheduler`), so a burst that Redis sent in one go
(a pipeline of publishes, say) reaches each client as one frame in one write,
even with ``write_delay = 0``. Leaving the fan-out to the next iteration lets
what else became ready in this one go first: the replies to the publishes, read
on the command connection, reach their publisher before the fan-out's writes,
so it can send its next publications while the node writes to its subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.broker.base import BrokerUnavailable

log = logging.getLogger("stagewire.broker.redis")

# Errors that mean "the connection is gone", logged without a traceback.
_CONNECTION_ERRORS = (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError)


@dataclass(frozen=True, slots=True)
class PubSubMode:
    """Command and reply names of classic or sharded (Redis 7) pub/sub."""

    subscribe: str
    unsubscribe: str
    message: bytes
    subscribed: bytes


CLASSIC = PubSubMode("SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe")
SHARDED = PubSubMode("SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe")


@dataclass(frozen=True, slots=True)
class Timing:
    """How a shard waits: confirmation bound, heartbeat and reconnect backoff."""

    confirm_timeout: float
    # A connection silent this long gets a PING; silent twice as long, it is dead.
    ping_interval: float
    min_delay: float
    max_delay: float

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (from 0): doubling, capped, ±20%."""
        delay = min(self.max_delay, self.min_delay * 2 ** min(attempt, 32))
        # Jitter so that nodes cut off together do not reconnect in lockstep.
        return float(delay * random.uniform(0.8, 1.2))


class PubSubShard:
    """One pub/sub connection and the channels it holds, kept alive by a task.

    Args:
        label: names the shard in logs.
        connect: makes a new, unconnected redis-py connection (RESP2).
        mode: classic or sharded pub/sub.
        timing: timeouts and backoff.
        on_message: called as ``on_message(key, payload)`` for each message of
            a held channel; ``key`` is what the channel was held with.
        on_gap: called with the keys of the channels that may have missed
            messages, after a reconnect.
    """

    def __init__(
        self,
        label: str,
        connect: Callable[[], AbstractConnection],
        mode: PubSubMode,
        timing: Timing,
        on_message: Callable[[Any, bytes], None],
        on_gap: Callable[[Sequence[Any]], None],
    ) -> None:
        self._label = label
        self._connect = connect
        self._mode = mode
        self._timing = timing
        self._on_message = on_message
        self._on_gap = on_gap
        self._held: dict[bytes, Hashable] = {}  # Redis channel -> caller's key
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._to_subscribe: set[bytes] = set()
        self._to_unsubscribe: set[bytes] = set()
        self._unconfirmed: set[bytes] = set()  # resubscribed after a connect, not confirmed yet
        self._gap: set[bytes] = set()
        self._outbox = asyncio.Event()
        self._received: list[tuple[bytes, Any]] = []  # (channel, payload) read, not yet delivered
        self._task: asyncio.Task[None] | None = None
        self.healthy = False
        self.settled = asyncio.Event()  # set once the first connection attempt is over
        self.reconnects = 0  # times healthy again after having been healthy (for /metrics)
        self._was_healthy = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"redis-pubsub-{self._label}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Cancel until it ends: on Python 3.11 asyncio.wait_for, which redis-py
            # uses for every write, swallows a cancellation that races its result.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            if not task.cancelled() and task.exception() is not None:
                log.error("Redis pub/sub %s ended with an error", self._label, exc_info=task.exception())
        self.healthy = False
        self._received.clear()
        self._fail_waiters("broker closed")

    def hold(self, name: bytes, key: Hashable) -> None:
        """Hold ``name`` from now on without waiting for Redis (used before start)."""
        self._held[name] = key
        self._request(name, subscribe=True)

    async def subscribe(self, name: bytes, key: Hashable) -> None:
        """Hold ``name``; returns once Redis confirmed it, else raises BrokerUnavailable."""
        if not self.healthy:
            raise BrokerUnavailable(f"Redis pub/sub connection {self._label} is down")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        self.hold(name, key)
        try:
            async with asyncio.timeout(self._timing.confirm_timeout):
                await waiter
        except BaseException as exc:
            # Not confirmed: the caller will not count it as held, so neither do we.
            futures = self._waiters.get(name, [])
            if waiter in futures:
                futures.remove(waiter)
            if not futures:
                self._waiters.pop(name, None)
            self.unsubscribe(name)
            if isinstance(exc, TimeoutError):
                raise BrokerUnavailable(f"Redis did not confirm subscribing {name!r}") from None
            raise

    def unsubscribe(self, name: bytes) -> None:
        """Stop delivering ``name`` now; Redis is told in the next batch."""
        if self._held.pop(name, None) is not None:
            self._request(name, subscribe=False)

    def _request(self, name: bytes, subscribe: bool) -> None:
        wanted, cancelled = (
            (self._to_subscribe, self._to_unsubscribe) if subscribe
            else (self._to_unsubscribe, self._to_subscribe)
        )
        cancelled.discard(name)
        wanted.add(name)
        self._outbox.set()

    # -- the connection -----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, _CONNECTION_ERRORS):
                    log.warning("Redis pub/sub %s: connection lost: %s", self._label, exc)
                else:
                    log.error("Redis pub/sub %s failed", self._label, exc_info=exc)
            if self._lost():
                attempt = 0
            self.settled.set()
            await asyncio.sleep(self._timing.backoff(attempt))
            attempt += 1

    async def _session(self) -> None:
        conn = self._connect()
        writer: asyncio.Task[None] | None = None
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            # Everything still held is subscribed again in one command; what was
            # requested while we were down is part of that already.
            self._to_subscribe.clear()
            self._to_unsubscribe.clear()
            self._unconfirmed = set(self._held)
            if self._unconfirmed:
                await conn.send_command(self._mode.subscribe, *self._unconfirmed, check_health=False)
            else:
                self._recovered()
            writer = asyncio.create_task(self._write_loop(conn), name=f"redis-pubsub-{self._label}-writer")
            await self._read_loop(conn)
        finally:
            if writer is not None:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            await conn.disconnect(nowait=True)

    async def _write_loop(self, conn: AbstractConnection) -> None:
        try:
            while True:
                await self._outbox.wait()
                self._outbox.clear()
                for command, names in ((self._mode.unsubscribe, self._to_unsubscribe),
                                       (self._mode.subscribe, self._to_subscribe)):
                    if names:
                        batch = list(names)
                        names.clear()
                        await _send(conn, command, *batch)
        except Exception as exc:
            log.warning("Redis pub/sub %s: cannot send: %s", self._label, exc)
            # Closing the connection ends the read loop, and so this session.
            await conn.disconnect(nowait=True)

    async def _read_loop(self, conn: AbstractConnection) -> None:
        pinged = False
        while True:
            reply = await conn.read_response(timeout=self._timing.ping_interval)
            if reply is None:
                if pinged:
                    raise TimeoutError(f"no reply to PING within {self._timing.ping_interval}s")
                pinged = True
                await _send(conn, "PING")
                continue
            pinged = False
            # Replies are [kind, channel, payload-or-count]; a PONG is shorter.
            if isinstance(reply, list) and len(reply) == 3:
                self._dispatch(reply[0], reply[1], reply[2])

    def _dispatch(self, kind: bytes, name: bytes, payload: Any) -> None:
        if kind == self._mode.message:
            if name in self._held:
                if not self._received:
                    asyncio.get_running_loop().call_soon(self._deliver)
                self._received.append((name, payload))
            return  # else a late message of a channel being unsubscribed
        self._deliver()  # what came before a confirmation is delivered before it takes effect
        if kind == self._mode.subscribed:
            for waiter in self._waiters.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if name not in self._held:
                self._request(name, subscribe=False)  # given up while it was in flight
            if name in self._unconfirmed:
                self._unconfirmed.discard(name)
                if not self._unconfirmed:
                    self._recovered()

    def _deliver(self) -> None:
        """Hand every message read so far to ``on_message``, in order, for channels still held."""
        received, self._received = self._received, []
        held, on_message = self._held, self._on_message
        for name, payload in received:
            key = held.get(name)
            if key is None:
                continue  # unsubscribed meanwhile: an unsubscribe takes effect at once
            try:
                on_message(key, payload)
            except Exception:
                log.exception("Redis pub/sub %s: cannot deliver a message of %r", self._label, name)

    def _recovered(self) -> None:
        """Everything held is subscribed again: report the gap, then be healthy."""
        gap = [self._held[name] for name in self._gap if name in self._held]
        self._gap.clear()
        if gap:
            try:
                self._on_gap(gap)
            except Exception:
                log.exception("Redis pub/sub %s: on_gap failed", self._label)
        if self._was_healthy:
            self.reconnects += 1
        self._was_healthy = True
        self.healthy = True
        self.settled.set()

    def _lost(self) -> bool:
        """The connection is gone; returns whether it had been healthy."""
        was_healthy, self.healthy = self.healthy, False
        self._unconfirmed.clear()
        self._fail_waiters(f"Redis pub/sub connection {self._label} lost")
        # Whatever is still held may miss messages until it is confirmed again.
        self._gap.update(self._held)
        return was_healthy

    def _fail_waiters(self, reason: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for name, futures in waiters.items():
            self._held.pop(name, None)
            for waiter in futures:
                if not waiter.done():
                    waiter.set_exception(BrokerUnavailable(reason))


async def _send(conn: AbstractConnection, *args: Any) -> None:
    # redis-py would silently reconnect a closed connection, which would then
    # hold no subscriptions: a closed connection must end the session instead.
    if not conn.is_connected:
        raise RedisConnectionError("pub/sub connection closed")
    await conn.send_command(*args, check_health=False)
