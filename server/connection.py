"""One client connection: its identity, subscriptions, rate limit and writer.

A connection never awaits its peer when something is sent to it: ``send``
encodes and queues; the :class:`~server.writer.Writer` writes once per tick.
``close`` is idempotent and synchronous: it queues the ``disconnect`` push,
flushes it, and lets a background task finish the WebSocket close handshake.
``close_now`` is the same for a node that closes all of its connections at
once (SIGTERM): no task and no timer of its own, the push and the close frame
in one write, and the node bounds the wait for the peers' close frames.

A connection is given what it needs (the client settings, the flush
scheduler, the node's counters and a way to run a background task), not the
node: it knows nothing of hubs, brokers or other connections.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
import secrets
import time
from typing import Any, Callable, Collection, Coroutine, Mapping

from aiohttp import web

from server import protocol
from server.auth.identity import Identity
from server.config import ClientSettings
from server.errors import CloseCode
from server.expiry import Expiries
from server.ops.counters import Counters
from server.protocol import Encoding
from server.writer import FlushScheduler, Writer, close_frame, limit_unsent

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]
"""Runs a background task that its owner tracks and cancels on close."""

log = logging.getLogger("stagewire.connection")

CLOSE_TIMEOUT = 2.0
#: A WebSocket ping with no payload (server frames are not masked).
PING_FRAME = b"\x89\x00"


#: Connection ids made from one ``os.urandom`` read.
ID_BATCH = 256
_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)  # a worker never repeats its parent's


def new_id() -> str:
    """A random connection id of 16 hex digits; a storm of connects reads the system's random source once per batch."""
    if not _ids:
        digits = secrets.token_hex(8 * ID_BATCH)
        _ids.extend(digits[i:i + 16] for i in range(0, len(digits), 16))
    return _ids.pop()


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"


class Connection:
    """A WebSocket client of this node.

    Thousands of these sit idle at a time, so each holds as little as it can:
    ``__slots__``, no timer of its own (token expiry is one of the node's
    :class:`~server.expiry.Expiries`), no task of its own, and rate-limit
    state that starts from the settings without a copy.
    """

    __slots__ = (
        "id", "ws", "encoding", "remote", "state", "identity", "subscriptions", "writer",
        "closed_with", "_finished", "heard", "_transport", "_settings", "_counters", "_spawn",
        "_expiries", "_expires", "_tokens", "_refilled_at", "_rejected", "_close_task",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        encoding: Encoding,
        remote: str | None,
        *,
        settings: ClientSettings,
        flusher: FlushScheduler,
        counters: Counters,
        spawn: Spawn,
        expiries: Expiries | None = None,
    ) -> None:
        self.id = new_id()
        self.ws = ws
        self.encoding = encoding
        self.remote = remote
        self.state = State.CONNECTING
        self.identity: Identity | None = None
        # Its channels, kept by the hub: a tuple while few (server.hub.with_channel).
        self.subscriptions: Collection[str] = ()
        self.writer = Writer(
            transport,
            flusher,
            binary=encoding.binary,
            limit=settings.write_buffer_limit,
            on_overflow=self._on_overflow,
        )
        # Keep what the peer does not read in the writer's bound, not in the kernel.
        limit_unsent(transport, settings.socket_unsent_limit)
        self._transport = transport
        self._settings = settings
        self._counters = counters
        self._spawn = spawn
        self._expiries = expiries if expiries is not None else Expiries(asyncio.get_running_loop())
        self._expires: int | None = None  # the key of this connection in _expiries
        # The token bucket, as of _refilled_at; never used yet, it refills to a full burst.
        self._tokens = 0.0
        self._refilled_at = -math.inf
        self._rejected = 0
        self._close_task: asyncio.Task[None] | None = None
        # Whether the peer sent anything since the node's last heartbeat.
        self.heard = True
        # (code, reason) of the close the server started, for the disconnect webhook.
        self.closed_with: tuple[int, str] | None = None
        self._finished: asyncio.Future[None] | None = None

    @property
    def finished(self) -> asyncio.Future[None]:
        """Resolved by the protocol's handler once the connection is fully gone (made when first asked for)."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        return self._finished

    # -- sending ------------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> None:
        """Encode and queue one message for this client."""
        self._counters.messages_out += 1
        self.writer.enqueue(protocol.encode(message, self.encoding))

    def send_reply(self, message: Mapping[str, Any]) -> None:
        """Like :meth:`send`, for a command's reply: flushed ahead of fan-out (``Writer.enqueue_first``)."""
        self._counters.messages_out += 1
        self.writer.enqueue_first(protocol.encode(message, self.encoding))

    def send_encoded(self, payload: bytes) -> None:
        """Queue a message already encoded in this connection's encoding."""
        self._counters.messages_out += 1
        self.writer.enqueue(payload)

    # -- identity -----------------------------------------------------------

    def authenticate(self, identity: Identity) -> None:
        """Attach (or replace, on refresh) the identity and arm the expiry timer."""
        self.identity = identity
        self.state = State.CONNECTED
        self._cancel_expiry()
        if math.isinf(identity.expires_at):
            return  # a connect proxy's user without an expiry
        self._expires = self._expiries.add(self, identity.expires_at)

    def expired(self) -> None:
        """The token expired (called by the node's :class:`~server.expiry.Expiries`)."""
        self._expires = None
        self.close(CloseCode.TOKEN_EXPIRED, "token expired")

    def _cancel_expiry(self) -> None:
        if self._expires is not None:
            self._expiries.remove(self, self._expires)
            self._expires = None

    # -- rate limit ---------------------------------------------------------

    def allow_command(self) -> bool:
        """Token bucket: ``command_rate`` per second with bursts of ``command_burst``."""
        now = time.monotonic()
        settings = self._settings
        tokens = min(settings.command_burst, self._tokens + (now - self._refilled_at) * settings.command_rate)
        self._refilled_at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self._rejected = 0
            return True
        self._tokens = tokens
        self._rejected += 1
        if self._rejected > settings.command_burst:
            # A client that keeps going after a burst of refusals is flooding us.
            self.close(CloseCode.RATE_LIMITED, "too many commands")
        return False

    # -- closing ------------------------------------------------------------

    def close(self, code: CloseCode, reason: str, reconnect_after: tuple[int, int] | None = None) -> None:
        """Send ``disconnect`` and close the WebSocket; safe to call many times.

        ``reconnect_after`` (``[min_ms, max_ms]``) goes into the push: how long the
        client should wait before it reconnects.
        """
        if self.state is State.CLOSING:
            return
        self.state = State.CLOSING
        self.closed_with = (int(code), reason)
        self._cancel_expiry()
        self.send_last(code, reason, reconnect_after)
        self._close_task = self._spawn(self._close_ws(code, reason))

    def close_now(self, code: CloseCode, reason: str, reconnect_after: tuple[int, int] | None = None) -> None:
        """As :meth:`close`, without a task: for a node closing every connection at once.

        The ``disconnect`` push and the close frame go out in one write, and the
        WebSocket counts as closed from then on: its handler dispatches
        nothing more and ends with the next thing the peer sends (its close
        frame, as a rule) or the end of the connection. Nothing here bounds
        that wait: the caller waits for :attr:`finished` until its deadline and
        aborts the rest.
        """
        if self.state is State.CLOSING:
            return
        self.state = State.CLOSING
        self.closed_with = (int(code), reason)
        self._cancel_expiry()
        frame = self._start_close(code, reason)
        if self.writer.closed:
            if frame and not self._transport.is_closing():
                self._transport.write(frame)
            return
        # A flush that finds the peer not reading cuts it off as slow instead (aborted).
        self.send_last(code, reason, reconnect_after, trailer=frame)

    def _start_close(self, code: CloseCode, reason: str) -> bytes:
        """Mark the WebSocket closed; the close frame to write (empty if it was closed already).

        aiohttp's own ``close`` is a coroutine that then waits for the handler;
        once marked closed it neither sends a second close frame when the
        peer's arrives nor one of its own when the handler returns.
        """
        ws = self.ws
        if ws.closed:
            return b""
        ws._set_closed()
        return close_frame(self._wire_close_code(code), reason.encode())

    def _wire_close_code(self, code: CloseCode) -> int:
        """The close code as this protocol sends it."""
        return int(code)

    async def wait_closed(self) -> None:
        """Wait for a close started by :meth:`close` to finish (it is bounded in time)."""
        if self._close_task is not None:
            await asyncio.shield(self._close_task)

    def send_last(
        self, code: CloseCode, reason: str, reconnect_after: tuple[int, int] | None = None, *, trailer: bytes = b""
    ) -> None:
        """Write the ``disconnect`` push now, after what is queued; nothing is sent after it but ``trailer``."""
        writer = self.writer
        if writer.closed:
            return
        push = protocol.disconnect_push(int(code), reason, code.reconnect, reconnect_after)
        writer.enqueue(protocol.encode(push, self.encoding))
        writer.flush(trailer, now=True)
        writer.closed = True

    def detach(self) -> None:
        """Drop timers and queued output once the connection is gone (the node forgets it)."""
        self._cancel_expiry()
        self.writer.detach()

    def heartbeat(self) -> None:
        """Ping the peer, and drop it if it sent nothing (not even a pong) since the last ping.

        The node calls this every ``ping_interval``: one sweep over the
        connections instead of a timer per connection. A dead peer is dropped
        between one and two intervals after it went silent.
        """
        if self.writer.closed:
            return
        if not self.heard:
            self.abort()
            return
        self.heard = False
        self._transport.write(PING_FRAME)

    def _on_overflow(self) -> None:
        self._counters.slow_disconnects += 1
        self.cut_off(CloseCode.SLOW, "slow client: outbound buffer full")

    def cut_off(self, code: CloseCode, reason: str) -> None:
        """Close a client that does not read what it is sent, releasing its buffers at once.

        If the socket still takes everything written to it (only our own
        queue overflowed, in one burst), the client is told why, as by
        :meth:`close`. Otherwise the transport holds data that the peer is not
        reading, and a ``disconnect`` push or a close frame would only wait
        behind it: the transport is aborted instead, soon after (``ABORTS_PER_BATCH``
        connections a millisecond at most, so that a thousand cut off together
        do not stall everyone else at once); what Stagewire itself queued is
        dropped now.
        """
        if self._transport.get_write_buffer_size() == 0:
            self.close(code, reason)
            return
        if self.state is not State.CLOSING:
            self.state = State.CLOSING
            self.closed_with = (int(code), reason)
        self._cancel_expiry()
        self.writer.cut_off()

    def abort(self) -> None:
        """Drop the connection now: no close handshake, nothing more is written."""
        self._cancel_expiry()
        self.writer.discard()
        self.writer.closed = True
        # A closing transport may still hold (and keep) what the peer did not read.
        self._transport.abort()

    async def _close_ws(self, code: CloseCode, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=int(code), message=reason.encode()), CLOSE_TIMEOUT
            )
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            # A peer that does not answer the close handshake is cut off. aiohttp
            # closes the transport when the handshake times out, but a closed
            # transport keeps its unsent buffer until the peer reads it: abort.
            self._transport.abort()

    def __repr__(self) -> str:
        user = self.identity.username if self.identity else None
        return f"<Connection {self.id} user={user} state={self.state.value}>"
