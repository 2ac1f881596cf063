"""``MemoryBroker``: the embedded single-process broker.

It keeps every channel's stream (offset, epoch, bounded history) in this
process and delivers synchronously to the node. It is the default for one
server on one machine; it cannot share channels between processes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from typing import Any, Callable

from server.broker.base import (
    IDEMPOTENCY_TTL,
    BrokerHandler,
    HistoryOptions,
    OffsetConflict,
    Publication,
    StreamPosition,
)

SWEEP_INTERVAL = 60.0


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Stream:
    __slots__ = ("offset", "epoch", "history", "expires_at", "meta_expires_at", "idempotency")

    def __init__(self, now: float, options: HistoryOptions) -> None:
        self.offset = 0
        self.epoch = new_epoch()
        # (expires_at, publication), oldest first.
        self.history: deque[tuple[float, Publication]] = deque()
        self.expires_at = now + options.ttl
        self.meta_expires_at = now + max(options.meta_ttl, options.ttl)
        # idempotency key → (expires_at, position of the first publication)
        self.idempotency: dict[str, tuple[float, StreamPosition]] = {}


class MemoryBroker:
    """A :class:`~server.broker.base.Broker` held in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._subscribed: set[str] = set()
        self._handler: BrokerHandler | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self._handler is not None

    @property
    def reconnects(self) -> int:
        return 0  # nothing to lose: the broker is in this process

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-broker-sweep")

    async def close(self) -> None:
        self._handler = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

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
        now = self._clock()
        stream = self._stream(channel, now, history)
        if idempotency_key is not None:
            seen = stream.idempotency.get(idempotency_key)
            if seen is not None and seen[0] > now:
                return StreamPosition(seen[1].offset, seen[1].epoch, already=True)
        if expected_offset is not None:
            if stream.offset >= expected_offset:
                return StreamPosition(stream.offset, stream.epoch, already=True)
            if stream.offset != expected_offset - 1:
                raise OffsetConflict(StreamPosition(stream.offset, stream.epoch))
        stream.offset += 1
        pub = Publication(channel, stream.offset, stream.epoch, data, info)
        if history.size > 0 and history.ttl > 0:
            stream.history.append((now + history.ttl, pub))
            while len(stream.history) > history.size:
                stream.history.popleft()
        stream.expires_at = now + history.ttl
        stream.meta_expires_at = now + max(history.meta_ttl, history.ttl)
        position = StreamPosition(pub.offset, pub.epoch)
        if idempotency_key is not None:
            stream.idempotency[idempotency_key] = (now + IDEMPOTENCY_TTL, position)
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_publication(pub)
        return position

    async def restore_position(self, channel: str, position: StreamPosition) -> None:
        now = self._clock()
        stream = self._stream(channel, now, None)
        if stream.epoch == position.epoch and stream.offset >= position.offset:
            return  # passed already: see Broker, Restore
        stream.offset, stream.epoch = position.offset, position.epoch
        stream.history.clear()

    async def publish_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_presence(kind, channel, info)

    async def publish_control(self, message: dict[str, Any]) -> None:
        if self._handler is not None:
            self._handler.on_control(message)

    async def position(self, channel: str) -> StreamPosition:
        stream = self._stream(channel, self._clock(), None)
        return StreamPosition(stream.offset, stream.epoch)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        now = self._clock()
        stream = self._stream(channel, now, None)
        top = StreamPosition(stream.offset, stream.epoch)
        while stream.history and stream.history[0][0] <= now:
            stream.history.popleft()
        if limit <= 0 or (since is not None and since.epoch != stream.epoch):
            return [], top
        after = since.offset if since is not None else 0
        pubs = [pub for _, pub in stream.history if pub.offset > after]
        if reverse:
            pubs.reverse()
        return pubs[:limit], top

    def _stream(self, channel: str, now: float, options: HistoryOptions | None) -> _Stream:
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expires_at <= now:
            # The stream's position outlived its keep time: reset it under a new epoch.
            stream = None
        if stream is None:
            stream = _Stream(now, options or HistoryOptions())
            self._streams[channel] = stream
        return stream

    def _sweep(self) -> None:
        now = self._clock()
        for channel in [c for c, s in self._streams.items() if s.meta_expires_at <= now]:
            del self._streams[channel]
        for stream in self._streams.values():
            while stream.history and stream.history[0][0] <= now:
                stream.history.popleft()
            for key in [k for k, (expires, _) in stream.idempotency.items() if expires <= now]:
                del stream.idempotency[key]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep()
