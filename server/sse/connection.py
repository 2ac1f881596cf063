"""``SseConnection``: a node connection over one ``text/event-stream`` response.

It is a :class:`~server.connection.Connection` (identity, expiry, the
writer's byte bound and slow-client close, indexes for logout and
``disconnect``), subscribed through the node like any other. Its writer
sends each tick's events as one HTTP chunk with one ``transport.write``, and
gives every ``pub`` the connection's stream position as its ``id``
(:mod:`server.sse.codec`). Closing sends a ``disconnect`` event and ends the
response; the browser's EventSource then reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, cast

from aiohttp import web

from server.config import ClientSettings
from server.connection import Connection, Spawn
from server.errors import CloseCode
from server.ops.counters import Counters
from server.protocol import Encoding
from server.sse import codec
from server.writer import FlushScheduler, Writer


def chunks(pending: list[bytes]) -> list[bytes]:
    """One HTTP/1.1 chunk holding every pending event."""
    return [f"{sum(map(len, pending)):x}\r\n".encode(), *pending, b"\r\n"]


def unframed(pending: list[bytes]) -> list[bytes]:
    """HTTP/1.0: the body is delimited by the end of the connection."""
    return pending


class StreamEnd:
    """What the connection closes instead of a WebSocket: it ends the response.

    ``close`` tells the handler to finish and waits (bounded by the
    connection's close timeout) until the final chunk is written.
    """

    #: As a WebSocket's: the node reads it for a connection that ended without a close of its own
    #: (the reader went away). A stream has no close code.
    close_code: int | None = None

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.drained = asyncio.Event()

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.done.set()
        await self.drained.wait()
        return True


class SseWriter(Writer):
    """Adds each connection's ``id:`` line to publications; notices a peer that went away."""

    __slots__ = ("positions", "_sse_transport", "_on_lost")

    def __init__(self, transport: asyncio.Transport, scheduler: FlushScheduler, *, chunked: bool, limit: int,
                 on_overflow: Callable[[], None], on_lost: Callable[[], None]) -> None:
        super().__init__(transport, scheduler, binary=False, limit=limit, on_overflow=on_overflow,
                         framing=chunks if chunked else unframed)
        self.positions: dict[str, tuple[int, str]] = {}
        self._sse_transport = transport
        self._on_lost = on_lost
        self.append = self.enqueue  # each publication gets this stream's id line

    def enqueue(self, payload: bytes) -> None:
        if not payload:
            return
        split = codec.split_position(payload)
        if split is not None:
            channel, offset, event = split
            epoch = self.positions.get(channel, (0, ""))[1]
            self.positions[channel] = (offset, epoch)
            payload = event + b"id: " + codec.encode_id(self.positions).encode() + b"\n\n"
        super().enqueue(payload)

    def enqueue_with_id(self, event: str, data: Any) -> None:
        """One of the stream's own events, with the current position as its id."""
        super().enqueue(codec.event(event, data, codec.encode_id(self.positions)))

    def flush(self, trailer: bytes = b"", now: bool = False) -> int:
        if self._sse_transport.is_closing():
            self._on_lost()
        return super().flush(trailer, now)


class SseConnection(Connection):
    def __init__(
        self,
        end: StreamEnd,
        transport: asyncio.Transport,
        remote: str | None,
        *,
        chunked: bool,
        settings: ClientSettings,
        flusher: FlushScheduler,
        counters: Counters,
        spawn: Spawn,
    ) -> None:
        # The connection only ever closes its "WebSocket": here, the end of the stream.
        super().__init__(cast(web.WebSocketResponse, end), transport, Encoding.SSE, remote,
                         settings=settings, flusher=flusher, counters=counters, spawn=spawn)
        self.end = end
        self._sse_counters = counters
        self.writer = self.sse_writer = SseWriter(
            transport, flusher, chunked=chunked, limit=settings.write_buffer_limit,
            on_overflow=self._slow, on_lost=end.done.set,
        )

    def _start_close(self, code: CloseCode, reason: str) -> bytes:
        """An event stream has no close frame: its handler ends the response."""
        self.end.done.set()
        return b""

    def heartbeat(self) -> None:
        """Nothing: an event stream cannot answer a ping; a dead reader is found when writing fails."""

    def _slow(self) -> None:
        self._sse_counters.slow_disconnects += 1
        self.cut_off(CloseCode.SLOW, "slow client: outbound buffer full")
        self.end.done.set()  # an aborted stream has no close to wait for: the handler ends now
