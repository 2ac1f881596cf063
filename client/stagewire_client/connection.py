"""One open WebSocket to a Stagewire server: the ``connect`` handshake, requests, frames.

A :class:`Link` lives as long as one WebSocket. It numbers its commands from 1
(``connect`` is always 1), matches replies to futures by id, and hands every
push to the owner's callback. It never reconnects: when the socket ends,
:meth:`Link.read` returns the :class:`~stagewire_client.errors.Disconnected`
that says why, and the :class:`~stagewire_client.client.Client` decides what
to do next.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from stagewire_client import protocol
from stagewire_client.errors import (
    CannotConnect,
    CloseCode,
    Disconnected,
    ProtocolViolation,
    StagewireError,
    should_reconnect,
)
from stagewire_client.protocol import ConnectInfo, Encoding, Push, Reply

log = logging.getLogger("stagewire_client")

OnResult = Callable[[Any], None]
OnError = Callable[[StagewireError], None]


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    # Run by the reader before the future resolves, in arrival order, even if
    # the caller gave up waiting: a subscribe's state must follow the server's.
    on_result: OnResult | None
    on_error: OnError | None


class Link:
    """An authenticated WebSocket; open one with :meth:`open`."""

    def __init__(self, url: str, ws: ClientConnection, encoding: Encoding) -> None:
        self.url = url
        self.ws = ws
        self.encoding = encoding
        self.info: ConnectInfo | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._disconnect: Mapping[str, Any] | None = None
        self._early: list[Any] = []

    @classmethod
    async def open(cls, url: str, token: str, encoding: Encoding, timeout: float) -> Link:
        """Open a WebSocket to ``url`` and authenticate with ``token``.

        Raises:
            CannotConnect: The server cannot be reached, or is not a Stagewire server.
            StagewireError: ``connect`` was refused (101 unauthorized, 109 token expired, ...).
            Disconnected: The server closed the connection during the handshake.
        """
        try:
            ws = await websockets.connect(
                url,
                subprotocols=[Subprotocol(encoding.value)],
                open_timeout=timeout,
                compression=None,  # the server never compresses
                max_size=None,  # a trusted server may coalesce many messages in one frame
            )
        except (OSError, TimeoutError, InvalidURI, InvalidHandshake) as exc:
            raise CannotConnect(url, _describe(exc)) from None
        link = cls(url, ws, encoding)
        try:
            await link._handshake(token, timeout)
        except BaseException:
            link.abort()
            raise
        return link

    async def _handshake(self, token: str, timeout: float) -> None:
        chosen = self.ws.subprotocol
        # A server that names no subprotocol speaks JSON.
        if chosen != self.encoding.value and not (chosen is None and self.encoding is Encoding.JSON):
            raise CannotConnect(self.url, f"the server does not speak {self.encoding.value}")
        command_id = next(self._ids)
        try:
            await self.ws.send(protocol.encode([protocol.command(command_id, "connect", {"token": token})],
                                               self.encoding))
            async with asyncio.timeout(timeout):
                frame = await self.ws.recv()
        except ConnectionClosed as exc:
            raise self._ended(exc) from None
        except TimeoutError:
            raise CannotConnect(self.url, "no answer to connect") from None
        messages = protocol.decode_frame(frame, self.encoding)
        reply = protocol.parse_message(messages[0]) if messages else None
        if not isinstance(reply, Reply) or reply.id != command_id:
            raise ProtocolViolation("the first message must be the reply to connect")
        if reply.error is not None:
            raise reply.error
        self.info = protocol.connect_info(reply.result)
        self._early = messages[1:]

    # -- requests -------------------------------------------------------------

    async def request(
        self,
        type_: str,
        params: Mapping[str, Any] | None = None,
        on_result: OnResult | None = None,
        on_error: OnError | None = None,
    ) -> asyncio.Future[Any]:
        """Send one command; the returned future resolves with its result.

        The future fails with the :class:`StagewireError` of an error reply,
        or with :class:`Disconnected` if the connection ends first.
        """
        command_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = _Pending(future, on_result, on_error)
        try:
            await self.ws.send(protocol.encode([protocol.command(command_id, type_, params)], self.encoding))
        except ConnectionClosed as exc:
            self._pending.pop(command_id, None)
            raise self._ended(exc) from None
        return future

    # -- reading --------------------------------------------------------------

    async def read(self, dead_after: float, on_push: Callable[[Push], None]) -> Disconnected:
        """Read until the connection ends; returns why it ended.

        Commands still waiting for their reply are left for the caller to
        fail (:meth:`fail_pending`): only it knows whether it will reconnect.

        Args:
            dead_after: Seconds of silence after which the server is taken
                for dead and the connection is dropped (it pings every
                ``info.ping`` seconds).
            on_push: Called with every push, in arrival order.
        """
        try:
            for message in self._early:
                self._dispatch(message, on_push)
            self._early = []
            while True:
                async with asyncio.timeout(dead_after):
                    frame = await self.ws.recv()
                for message in protocol.decode_frame(frame, self.encoding):
                    self._dispatch(message, on_push)
        except TimeoutError:
            self.abort()
            end = Disconnected(CloseCode.ABNORMAL, f"nothing from the server for {dead_after:g} s", True)
        except ConnectionClosed as exc:
            end = self._ended(exc)
        except ProtocolViolation as exc:
            self.abort()
            # A server that sends garbage will send it again: do not loop.
            end = Disconnected(1002, str(exc), False)
        return end

    def _dispatch(self, message: Any, on_push: Callable[[Push], None]) -> None:
        parsed = protocol.parse_message(message)
        if isinstance(parsed, Push):
            if parsed.type == "disconnect":
                self._disconnect = parsed.body
            on_push(parsed)
            return
        pending = self._pending.pop(parsed.id, None)
        if pending is None:
            log.debug("reply to unknown command %d", parsed.id)
            return
        if parsed.error is not None:
            if pending.on_error is not None:
                pending.on_error(parsed.error)
            if not pending.future.done():
                pending.future.set_exception(parsed.error)
        else:
            if pending.on_result is not None:
                pending.on_result(parsed.result)
            if not pending.future.done():
                pending.future.set_result(parsed.result)

    @property
    def reconnect_after(self) -> Any:
        """The ``reconnect_after`` of the ``disconnect`` push received, if any (unchecked)."""
        return self._disconnect.get("reconnect_after") if self._disconnect is not None else None

    def _ended(self, exc: ConnectionClosed) -> Disconnected:
        """Why the connection ended: the ``disconnect`` push if any, else the close frame."""
        if self._disconnect is not None:
            code = self._disconnect.get("code")
            if isinstance(code, int):
                reason = str(self._disconnect.get("reason", ""))
                return Disconnected(code, reason, should_reconnect(code))
        if exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason or "closed by the server"
        else:
            code, reason = CloseCode.ABNORMAL, "connection lost"
        return Disconnected(code, reason, should_reconnect(code))

    def fail_pending(self, error: BaseException) -> None:
        """Fail every command still waiting for its reply."""
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(error)

    # -- closing --------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Close the WebSocket politely, or cut it off after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self.ws.close()
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _describe(exc: BaseException) -> str:
    """A short, human reason for a failed WebSocket open."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, InvalidURI):
        return "invalid URL (expected ws://host:port/ws)"
    if isinstance(exc, InvalidStatus):
        return (f"HTTP {exc.response.status_code} instead of a WebSocket upgrade "
                "(is this a Stagewire server's /ws URL?)")
    return str(exc) or type(exc).__name__
