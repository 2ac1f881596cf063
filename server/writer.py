"""Per-connection outbound buffers, coalesced into one write per event-loop tick.

Fan-out must never await a peer. A publication is encoded once, and its bytes
are appended to each subscriber's :class:`Writer`. Once per loop tick the
:class:`FlushScheduler` turns each writer's pending messages into a single
WebSocket frame and hands it to the transport with one ``write`` call.

Each writer is bounded in bytes: its pending messages plus what the transport
still holds may not exceed ``limit`` (checked as messages are queued and again
before every write), so the total is bounded by about twice ``limit``. When a
client cannot keep up, ``on_overflow`` is called and that client alone is
disconnected; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
_FIN = 0x80


def frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final, uncompressed server-to-client frame."""
    if length < 126:
        return bytes((_FIN | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", _FIN | opcode, 126, length)
    return struct.pack("!BBQ", _FIN | opcode, 127, length)


def close_frame(code: int, reason: bytes) -> bytes:
    """A server's close frame: ``code`` and ``reason`` (at most 123 bytes, as RFC 6455 allows)."""
    payload = struct.pack("!H", code) + reason[:123]
    return frame_header(OP_CLOSE, len(payload)) + payload


class FlushScheduler:
    """Flushes every writer that has pending data, once per loop tick.

    With a ``delay`` (``[client] write_delay``), the flush waits that long
    after the first message is queued, so that publications arriving one by one
    (from Redis, say, one per round trip) still share a write. It trades that
    much latency for fewer, larger writes.
    """

    __slots__ = ("_loop", "_dirty", "_scheduled", "_delay")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float = 0.0) -> None:
        self._loop = loop
        self._dirty: list[Writer] = []
        self._scheduled = False
        self._delay = delay

    def mark(self, writer: Writer) -> None:
        self._dirty.append(writer)
        if not self._scheduled:
            self._scheduled = True
            if self._delay > 0:
                self._loop.call_later(self._delay, self._run)
            else:
                self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer.flush()


#: The headers of frames shorter than 126 bytes, by opcode and length: no bytes made per write.
_SHORT = {op: [frame_header(op, n) for n in range(126)] for op in (OP_TEXT, OP_BINARY)}
_MEDIUM = struct.Struct("!BBH").pack


class Writer:
    """The outbound queue of one WebSocket connection.

    ``enqueue`` runs once per subscriber per publication, and ``flush`` once per
    connection per tick: both keep to a few attribute reads and no call they
    can avoid. Each flush builds the connection's one frame and writes it.
    """

    __slots__ = (
        "_transport",
        "_scheduler",
        "_pending",
        "_pending_bytes",
        "_marked",
        "_limit",
        "_opcode",
        "_short",
        "_separator",
        "_on_overflow",
        "_framing",
        "closed",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        scheduler: FlushScheduler,
        *,
        binary: bool,
        limit: int,
        on_overflow: Callable[[], None],
        framing: Callable[[list[bytes]], bytes] | None = None,
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._marked = False
        self._limit = limit
        self._opcode = OP_BINARY if binary else OP_TEXT
        self._short = _SHORT[self._opcode]
        # JSON messages in one frame are separated by newlines; msgpack needs nothing.
        self._separator = b"" if binary else b"\n"
        self._on_overflow = on_overflow
        # Another protocol shell's framing of the pending messages (one Pusher
        # frame per message, HTTP chunks of SSE); None: one WebSocket frame.
        self._framing = framing
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes queued here and not yet taken by the peer."""
        return self._pending_bytes + self._transport.get_write_buffer_size()

    def enqueue(self, payload: bytes) -> None:
        """Queue one encoded message; it goes out with the next flush."""
        if self.closed:
            return
        self._pending.append(payload)
        size = self._pending_bytes + len(payload)
        self._pending_bytes = size
        if size > self._limit:
            self._overflow()
        elif not self._marked:
            self._marked = True
            self._scheduler.mark(self)

    def flush(self, trailer: bytes = b"") -> None:
        """Write everything pending as one frame, with one ``transport.write``.

        ``trailer`` (a close frame) goes out in the same write, after the frame.
        """
        self._marked = False
        pending = self._pending
        if not pending or self.closed:
            return
        transport = self._transport
        if transport.is_closing():
            self.discard()
            self.closed = True
            return
        if transport.get_write_buffer_size() + self._pending_bytes > self._limit:
            self._overflow()
            return
        self._pending = []
        self._pending_bytes = 0
        if self._framing is not None:
            transport.write(self._framing(pending) + trailer)
            return
        payload = pending[0] if len(pending) == 1 else self._separator.join(pending)
        n = len(payload)
        # (bytes + b"" is the same object: no copy without a trailer.)
        if n < 126:
            transport.write(self._short[n] + payload + trailer)
        elif n < 65536:
            transport.write(_MEDIUM(0x80 | self._opcode, 126, n) + payload + trailer)
        else:
            transport.write(frame_header(self._opcode, n) + payload + trailer)

    def discard(self) -> None:
        """Drop everything pending (a slow client will not get it anyway)."""
        self._pending = []
        self._pending_bytes = 0

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow()
