"""``PusherConnection``: a node connection that speaks Pusher.

It is a :class:`~server.connection.Connection` of the node, so the hub, the
writer's byte bound, slow-client and shutdown handling, metrics and the
node's ``unregister`` apply to it unchanged. What differs:

* its encoding is ``Encoding.PUSHER`` (:func:`server.pusher.protocol.encode_push`);
* its writer sends one WebSocket frame per event (the Pusher SDKs parse one
  JSON object per message), still with one ``transport.write`` per tick,
  and drops events that exclude this socket (``socket_id`` of the HTTP API,
  the sender of a client event, the joiner of a presence channel) when it
  frames them (:func:`frames_for`);
* its last message is ``pusher:error`` with a Pusher close code, and the
  WebSocket is closed with that code (:func:`server.pusher.protocol.close_code`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

from server.config import ClientSettings, PusherAppSettings
from server.connection import Connection, Spawn, State
from server.errors import CloseCode
from server.ops.counters import Counters
from server.protocol import Encoding
from server.pusher import protocol as pp
from server.writer import OP_TEXT, FlushScheduler, Framing, Writer, frame_header


def new_socket_id() -> str:
    """Pusher's ``<digits>.<digits>``, random enough to be unique across the cluster."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


# Headers of text frames shorter than 126 bytes, by length (most events).
_SHORT_HEADERS = [frame_header(OP_TEXT, n) for n in range(126)]


def frames_for(socket_id: str) -> Framing:
    """The framing of one connection's writer: each event its own text frame, all in one write.

    It returns each frame's header and the event itself, so that the writer can
    hand large events to the transport by reference (:func:`~server.writer.write_buffers`).

    Events that exclude this socket (and empty ones: pushes with no Pusher
    form) are dropped here, at flush time, so that fan-out calls the plain
    ``Writer.append`` for Pusher subscribers too.
    """
    own = pp.EXCLUDE + socket_id.encode() + pp.EXCLUDE

    def frames(pending: list[bytes]) -> list[bytes]:
        parts: list[bytes] = []
        append = parts.append
        for payload in pending:
            if not payload:
                continue
            if payload[0] == 0:
                if payload.startswith(own):
                    continue
                payload = pp.split_exclusion(payload)[1]
            n = len(payload)
            append(_SHORT_HEADERS[n] if n < 126 else frame_header(OP_TEXT, n))
            append(payload)
        return parts

    return frames


class PusherWebSocket(web.WebSocketResponse):
    """Closes with Pusher's code for the node's (once ``translate`` is set)."""

    translate = False

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if self.translate:
            code = pp.close_code(code)
        return await super().close(code=code, message=message, drain=drain)


@dataclass(slots=True)
class Member:
    """This connection in one presence channel."""

    user_id: str
    info: str | None  # JSON text


class PusherConnection(Connection):
    """One Pusher client of this node."""

    def __init__(
        self,
        ws: PusherWebSocket,
        transport: asyncio.Transport,
        remote: str | None,
        app: PusherAppSettings,
        socket_id: str,
        *,
        settings: ClientSettings,
        flusher: FlushScheduler,
        counters: Counters,
        spawn: Spawn,
    ) -> None:
        super().__init__(ws, transport, Encoding.PUSHER, remote,
                         settings=settings, flusher=flusher, counters=counters, spawn=spawn)
        self.id = self.socket_id = socket_id
        self.app = app
        self.writer = Writer(
            transport, flusher, binary=False, limit=settings.write_buffer_limit,
            on_overflow=self._slow, framing=frames_for(socket_id),
        )
        self._pusher_counters = counters
        # Pusher channel → this connection's member entry (presence channels).
        self.members: dict[str, Member] = {}
        # After pusher:signin: the user's id and the user_data JSON text.
        self.user_id: str | None = None
        self.user_data: str | None = None
        self._event_tokens = app.client_event_rate
        self._event_refilled = time.monotonic()
        self.state = State.CONNECTED  # no connect command: the upgrade is the handshake
        ws.translate = True

    def channel(self, name: str) -> str:
        """The Stagewire channel of one of this app's Pusher channels."""
        return f"{self.app.namespace}:{name}"

    def allow_client_event(self) -> bool:
        """Token bucket of ``client_event_rate`` per second (bursts of one second's worth)."""
        rate = self.app.client_event_rate
        now = time.monotonic()
        self._event_tokens = min(rate, self._event_tokens + (now - self._event_refilled) * rate)
        self._event_refilled = now
        if self._event_tokens >= 1.0:
            self._event_tokens -= 1.0
            return True
        return False

    def send_last(
        self, code: CloseCode, reason: str, reconnect_after: tuple[int, int] | None = None, *, trailer: bytes = b""
    ) -> None:
        """``pusher:error`` with the Pusher close code, after what is queued; nothing after it but ``trailer``.

        Pusher's protocol has no reconnect hint: ``reconnect_after`` is not sent.
        """
        writer = self.writer
        if writer.closed:
            return
        writer.enqueue(pp.encode_push(pp.error(pp.close_code(int(code)), reason)))
        writer.flush(trailer, now=True)
        writer.closed = True

    def _wire_close_code(self, code: CloseCode) -> int:
        return pp.close_code(int(code))

    def heartbeat(self) -> None:
        """Nothing: aiohttp's own heartbeat pings Pusher clients (Pusher's ping/pong is its own protocol)."""

    def _slow(self) -> None:
        self._pusher_counters.slow_disconnects += 1
        self.cut_off(CloseCode.SLOW, "slow client: outbound buffer full")
