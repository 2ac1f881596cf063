"""``GET /app/{key}?protocol=7&client=...&version=...``: the Pusher WebSocket shell.

Origin is checked on every upgrade, as on ``/ws``, but a foreign one is
refused the way Pusher servers do: upgraded, then ``pusher:error`` 4009 and a
close, so that pusher-js stops instead of retrying an HTTP 403 forever.
Nothing else is read or sent on such a connection. Likewise, a
connection that cannot be served gets ``pusher:error`` and a close with
Pusher's code: unknown app 4001, disabled app 4003, over the app's
``max_connections`` 4004, missing or unsupported protocol 4008/4007, a node
shutting down 4100 (back off, reconnect elsewhere). Otherwise
``pusher:connection_established`` carries the socket id and the activity
timeout, and the read loop hands each message to its handler
(:data:`server.pusher.channels.HANDLERS`). Its ``finally`` always unregisters
the connection and forgets its presence entries.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web

from server.appkeys import NODE, PUSHER, SETTINGS
from server.connection import State
from server.errors import CloseCode, Disconnect, StagewireError
from server.ops import logs
from server.pusher import channels as handlers
from server.pusher import protocol as pp
from server.pusher.connection import PusherConnection, PusherWebSocket, new_socket_id
from server.pusher.service import PusherService
from server.websocket import origin_allowed

log = logging.getLogger("stagewire.pusher")


async def pusher_websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    node = request.app[NODE]
    svc = request.app[PUSHER]
    ws = PusherWebSocket(heartbeat=settings.client.ping_interval,
                         max_msg_size=settings.client.max_message_size, compress=False)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="expected a WebSocket upgrade")
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    if not origin_allowed(request, settings.server.allowed_origins):
        log.info("Pusher connection refused: origin %r not allowed", request.headers.get("Origin", "")[:200])
        return await _refuse(ws, pp.UNAUTHORIZED, "Origin not allowed")
    app = svc.apps.by_key(request.match_info["key"])
    version = request.query.get("protocol", "")
    socket_id = new_socket_id()
    if app is None:
        return await _refuse(ws, pp.APP_NOT_FOUND, "App key not in this cluster")
    if not app.enabled:
        return await _refuse(ws, pp.APP_DISABLED, "App is disabled")
    if not version:
        return await _refuse(ws, pp.NO_PROTOCOL, "No protocol version supplied")
    if not version.isdigit() or int(version) not in pp.PROTOCOL_VERSIONS:
        return await _refuse(ws, pp.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {version[:10]}")
    if node.shutting_down:
        return await _refuse(ws, pp.OVER_CAPACITY, "Server shutting down: reconnect later")
    try:
        admitted = await svc.members.admit(app, socket_id)
    except StagewireError:
        return await _refuse(ws, pp.OVER_CAPACITY, "Over capacity: try again later")
    if not admitted:
        return await _refuse(ws, pp.OVER_QUOTA, "App is over its connection quota")
    conn = PusherConnection(ws, transport, request.remote, app, socket_id, settings=settings.client,
                            flusher=node.flusher, counters=node.counters, spawn=node.spawn)
    node.adopt(conn)
    svc.add(conn)
    logs.conn_id.set(conn.id)
    started = time.monotonic()
    conn.send(pp.connection_established(conn.socket_id, app.activity_timeout))
    try:
        async for msg in ws:
            if conn.state is State.CLOSING:
                continue  # the server closed it: nothing more is dispatched, the handler ends with the peer's close
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await dispatch(svc, conn, msg.data)
            elif msg.type is WSMsgType.ERROR:
                break
    except Disconnect as exc:
        conn.close(exc.code, exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("Pusher connection %s failed", conn.id)
        conn.close(CloseCode.INTERNAL, "internal error")
    finally:
        channels = [pp.pusher_name(c) for c in conn.subscriptions]
        node.unregister(conn)
        svc.discard(conn)
        node.spawn(handlers.forget(svc, conn, channels))
        try:
            await conn.wait_closed()
        finally:
            if not conn.finished.done():
                conn.finished.set_result(None)
            if logs.connection_log.isEnabledFor(logging.INFO):
                logs.connection_log.info("Pusher connection closed", extra={
                    "code": ws.close_code, "seconds": round(time.monotonic() - started, 3), "app": app.id,
                })
    return ws


async def dispatch(svc: PusherService, conn: PusherConnection, data: str | bytes) -> None:
    """Handle one client message; a refusal becomes ``pusher:error``, never a closed loop."""
    svc.node.counters.commands += 1
    try:
        if not conn.allow_command():
            raise pp.PusherError("too many messages, slow down", pp.RATE_LIMITED)
        event = pp.decode(data)
        handler = handlers.HANDLERS.get(event.event)
        if handler is None:
            if not event.event.startswith("client-"):
                raise pp.PusherError(f"unsupported event {event.event[:200]!r}")
            handler = handlers.client_event
        await handler(svc, conn, event)
    except pp.PusherError as exc:
        svc.node.counters.command_errors += 1
        conn.send(pp.error(exc.pusher_code, exc.message))
    except StagewireError as exc:
        svc.node.counters.command_errors += 1
        conn.send(pp.error(pp.BAD_EVENT, exc.message))
    except Disconnect:
        raise
    except Exception:
        svc.node.counters.command_errors += 1
        log.exception("Pusher event failed")
        conn.send(pp.error(None, "internal error"))


async def _refuse(ws: PusherWebSocket, code: int, message: str) -> web.WebSocketResponse:
    """``pusher:error`` and a close with ``code`` (a Pusher code: not translated)."""
    try:
        await ws.send_str(pp.encode_push(pp.error(code, message)).decode())
        await asyncio.wait_for(ws.close(code=code, message=message.encode()), 2.0)
    except (ConnectionError, RuntimeError, asyncio.TimeoutError):
        pass
    return ws
