"""The ``GET /ws`` handler: upgrade, ``connect`` handshake, read loop, cleanup.

A thin shell around :class:`~server.connection.Connection`: it reads frames,
hands them to :func:`~server.dispatch.dispatch_frame`, and in its ``finally``
always unregisters the connection, whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

import pydantic
from aiohttp import WSCloseCode, WSMsgType, web

from server import protocol
from server.ops import logs
from server.appkeys import AUTH, HANDLER_TABLE, NODE, SETTINGS
from server.connection import Connection, State
from server.dispatch import Context, HandlerTable, Params, dispatch_frame, run_messages, validation_error
from server.errors import CloseCode, CommandError, Disconnect, ErrorCode, ProtocolError, StagewireError
from server.hooks.subscriptions import server_subscribe

if TYPE_CHECKING:
    from server.config import Settings
    from server.node import Node

log = logging.getLogger("stagewire.websocket")

#: Milliseconds a client refused by ``[server] max_handshakes`` is told to wait (``try_again``).
TRY_AGAIN_MS = 1000


class ConnectParams(Params):
    # Without a token, the backend's connect proxy decides from the request's cookies and headers.
    token: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    data: Any = None


class _WebSocket(web.WebSocketResponse):
    """Sends the ``disconnect`` push before aiohttp closes an oversized message with 1009."""

    __slots__ = ("connection",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection: Connection | None = None

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and self.connection is not None:
            conn, self.connection = self.connection, None
            conn.send_last(CloseCode.MESSAGE_TOO_BIG, "message too big")
        return await super().close(code=code, message=message, drain=drain)


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; it must be the server's own origin or an allowed one.

    Non-browser clients send no Origin header and are let through: they
    authenticate with a token like everyone else.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return origin == f"{request.scheme}://{request.host}"


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    # No middleware frame stays for a connection's life (logs.SELF_LOGGED): the
    # line of a refused upgrade, and its request id, are this handler's own.
    # An accepted one logs none: from the upgrade on, its lines name the connection.
    started = time.perf_counter()
    app = request.app
    node = app[NODE]
    try:
        ws = await _upgrade(request, app[SETTINGS], node)
    except BaseException as exc:
        logs.request_id.set(logs.new_request_id())
        logs.log_request(request, exc.status if isinstance(exc, web.HTTPException) else 500, started)
        raise
    # The connection's life, in this frame: connect, the read loop, the cleanup.
    transport = request.transport
    if transport is None:
        node.handshaking -= 1
        return ws
    conn = node.connect(ws, transport, protocol.encoding_for(ws.ws_protocol), peer_address(transport))
    ws.connection = conn
    # Every line logged by this task (commands, handlers) now names the connection.
    logs.conn_id.set(conn.id)
    ctx = Context(conn, node, app[AUTH])
    table = app[HANDLER_TABLE]
    try:
        try:
            await _handshake(ctx, ws, table, request.headers)
        finally:
            node.handshaking -= 1
            logs.request_id.set(None)  # the connect command's; each later command sets its own
        async for msg in ws:
            conn.heard = True
            if conn.state is State.CLOSING:
                continue  # the server closed it: nothing more is dispatched, the handler ends with the peer's close
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await dispatch_frame(ctx, msg.data, table)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.ERROR:
                break
    except Disconnect as exc:
        conn.close(exc.code, exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("connection %s failed", conn.id)
        conn.close(CloseCode.INTERNAL, "internal error")
    finally:
        node.unregister(conn)
        try:
            # Returning closes the WebSocket with 1000: let our own close code go first.
            await conn.wait_closed()
        finally:
            if not conn.finished.done():
                conn.finished.set_result(None)
            _break_cycles(ws)
            if logs.connection_log.isEnabledFor(logging.INFO):
                logs.connection_log.info("connection closed", extra={
                    "code": ws.close_code, "seconds": round(time.perf_counter() - started, 3),
                    "user": conn.identity.username if conn.identity else None,
                })
    return ws


def peer_address(transport: asyncio.BaseTransport) -> str | None:
    """``request.remote``, read from the transport.

    ``request.remote`` keeps its answer in the request's cache, and a
    WebSocket's request lives as long as the connection: one entry more there
    grows every connection's cache to its next size. Interned: the
    connections from one address (behind a load balancer, all of them) share
    one string.
    """
    peer = transport.get_extra_info("peername")
    if isinstance(peer, (list, tuple)):
        return sys.intern(str(peer[0]))
    return None if peer is None else str(peer)


def _break_cycles(ws: _WebSocket) -> None:
    """Let the connection's objects go by reference counting, not by the cycle collector.

    The WebSocket and its connection refer to each other, and aiohttp keeps the
    error that ended a WebSocket (a write to a transport the peer closed, say):
    its traceback holds the frames of ``close()``, and with them the WebSocket,
    its request and protocol. Left as they are, every finished connection is
    garbage that only a collection frees, and collections grow costly with the
    number of connections.
    """
    ws.connection = None
    exc = ws.exception()
    seen = 0
    while exc is not None and seen < 8:  # the error, and the one it was raised in handling
        exc.__traceback__ = None
        exc = exc.__context__
        seen += 1


async def _upgrade(request: web.Request, settings: Settings, node: Node) -> _WebSocket:
    """The checks before the upgrade, then the upgrade; an HTTP error for a refusal."""
    if not origin_allowed(request, settings.server.allowed_origins):
        raise web.HTTPForbidden(text="origin not allowed")
    if node.shutting_down:
        raise web.HTTPServiceUnavailable(text="shutting down")
    limit = settings.server.max_handshakes
    if limit and node.handshaking >= limit:
        # Before the upgrade, so that a storm of reconnects costs this node almost nothing.
        node.counters.connects_deferred += 1
        raise web.HTTPServiceUnavailable(
            text=f'{{"try_again": {TRY_AGAIN_MS}}}', content_type="application/json",
            headers={"Retry-After": str(max(1, TRY_AGAIN_MS // 1000))},
        )
    ws = _WebSocket(
        protocols=protocol.SUBPROTOCOLS,
        # The node's heartbeat sweep pings every connection (Connection.heartbeat):
        # no timer per connection, and pings and pongs come to the read loop.
        heartbeat=None,
        autoping=False,
        max_msg_size=settings.client.max_message_size,
        compress=False,
    )
    node.handshaking += 1  # until the connect command is done (the caller's finally)
    try:
        # prepare checks the upgrade request before it writes anything (can_prepare
        # first would run the same checks twice).
        await ws.prepare(request)
    except web.HTTPException:
        node.handshaking -= 1
        raise web.HTTPBadRequest(text="expected a WebSocket upgrade") from None
    except BaseException:
        node.handshaking -= 1
        raise
    return ws


async def _handshake(ctx: Context, ws: _WebSocket, table: HandlerTable, headers: Mapping[str, str]) -> None:
    """The first command must be ``connect`` with a valid token (or the connect proxy's yes); anything else closes."""
    conn = ctx.conn
    # The node's one timer for every handshake closes the connection if nothing came in time
    # (with CONNECT_TIMEOUT): the receive below then returns the close.
    deadline = ctx.node.connect_deadlines.add(conn)
    try:
        while True:
            msg = await ws.receive()
            conn.heard = True
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is not WSMsgType.PONG:
                break
    finally:
        deadline.cancel()
    if conn.state is State.CLOSING:
        # Closed by the server meanwhile (the deadline, a shutdown): its close code stands.
        raise Disconnect(CloseCode.CONNECT_TIMEOUT, "no connect command in time")
    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        raise Disconnect(CloseCode.NORMAL, "closed before connect")
    command_id = None
    ctx.node.counters.commands += 1
    try:
        messages = protocol.decode_frame(msg.data, conn.encoding)
        command = protocol.parse_command(messages[0])
        command_id = command.id
        logs.request_id.set(f"{conn.id}/{command_id}")
        if command.type != "connect":
            raise CommandError(ErrorCode.UNAUTHORIZED, "the first command must be connect")
        try:
            params = ConnectParams.model_validate(command.params)
        except pydantic.ValidationError as exc:
            raise validation_error(exc) from None
        connected = await ctx.node.proxy.authenticate(ctx.auth, conn, headers, params.token, params.data)
        identity = connected.identity
        if identity.expires_at <= time.time():
            # A token in its last moments would connect only to be closed at once.
            raise CommandError(ErrorCode.TOKEN_EXPIRED, "token expired")
    except StagewireError as exc:
        if isinstance(exc, ProtocolError) and exc.command_id is not None:
            command_id = exc.command_id
        ctx.node.counters.command_errors += 1
        log.info("connect refused: %s", exc.message, extra={"error": int(exc.code), "remote": conn.remote})
        conn.send_reply(protocol.error_reply(command_id, exc))
        if exc.code is ErrorCode.TOKEN_EXPIRED:
            raise Disconnect(CloseCode.TOKEN_EXPIRED, "token expired") from None
        if exc.code is ErrorCode.UNAUTHORIZED:
            raise Disconnect(CloseCode.UNAUTHORIZED, exc.message) from None
        if exc.code is ErrorCode.UNAVAILABLE:
            raise Disconnect(CloseCode.UNAVAILABLE, exc.message) from None
        raise Disconnect(CloseCode.BAD_REQUEST, exc.message) from None
    ctx.node.set_identity(conn, identity)
    if logs.connection_log.isEnabledFor(logging.INFO):
        logs.connection_log.info("connected", extra={
            "user": identity.username, "encoding": conn.encoding.value, "remote": conn.remote,
        })
    result: dict[str, Any] = {
        "client": conn.id,
        "user": identity.public(),
        "ping": ctx.node.settings.client.ping_interval,
        "expires_in": identity.expires_in(),
        "node": ctx.node.id,
    }
    activate = None
    if connected.channels:
        result["subscriptions"], activate = await server_subscribe(ctx.node, conn, connected.channels)
    conn.send_reply(protocol.reply(command.id, result))
    if activate is not None:
        activate()
    # Commands sent in the same frame as connect run right after it.
    await run_messages(ctx, messages[1:], table)
