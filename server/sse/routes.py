"""``GET /sse`` and ``POST /api/sse/ticket``.

``GET /sse?channel=A&channel=B[&ticket=T][&last_event_id=ID]`` answers
``text/event-stream``. Before the stream starts, every refusal is the
server's JSON error with its status: 403 for a foreign ``Origin`` or a
channel the user may not read, 401 without a valid ticket or cookie, 404 an
unknown namespace, 422 no or too many channels. Then, in order:

1. ``retry: 2000`` (EventSource's reconnect delay);
2. ``subscribed``: ``{"channels": {name: {"offset", "epoch", "recovered"?}}}``
   with the stream position as its ``id``;
3. per channel resumed from ``Last-Event-ID`` (the header, or the
   ``last_event_id`` parameter when a new EventSource is made with a new
   ticket): the missed publications as ``pub`` events if the server still
   has them all, otherwise one ``reload`` event ``{"channel", "offset",
   "epoch"}`` (reload that channel's state, then carry on from there);
4. live ``pub``, ``join``/``leave`` and ``unsubscribe`` events, and a
   ``: ping`` comment every ``ping_interval``.

The same rules as on ``/ws``: the namespace's subscribe permission, at most
``max_subscriptions`` channels, the writer's byte bound (a slow reader gets
``disconnect`` with 4001 and the stream ends), logout and ``POST
/api/disconnect`` end it, and so does the token's expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.http import HttpVersion11

from server import protocol
from server.api.common import bearer_token, json_body, json_response
from server.appkeys import AUTH, NODE, SETTINGS, SSE_TICKETS
from server.auth.identity import Identity
from server.broker.base import StreamPosition
from server.connection import CLOSE_TIMEOUT
from server.errors import CloseCode, CommandError, ErrorCode, StagewireError
from server.node import Node, Subscription
from server.sse import codec
from server.sse.connection import SseConnection, StreamEnd
from server.sse.tickets import COOKIE, TICKET_TTL
from server.websocket import origin_allowed

log = logging.getLogger("stagewire.sse")

RETRY_MS = 2000


async def ticket(request: web.Request) -> web.Response:
    """``POST /api/sse/ticket`` (bearer token): ``{"ticket", "expires_in"}``; ``{"cookie": true}`` sets the cookie too."""
    token = bearer_token(request)
    identity = await request.app[AUTH].verify(token)
    body = await json_body(request, empty_ok=True)
    cookie = body.get("cookie", False)
    if not isinstance(cookie, bool):
        raise CommandError(ErrorCode.BAD_REQUEST, "invalid fields", {"cookie": "true or false"})
    response = json_response({"ticket": request.app[SSE_TICKETS].issue(identity), "expires_in": TICKET_TTL})
    if cookie:
        response.set_cookie(COOKIE, token, max_age=max(1, int(identity.expires_at - time.time())),
                            path="/sse", httponly=True, samesite="Strict", secure=request.secure)
    return response


async def _identity(request: web.Request) -> Identity:
    ticket_ = request.query.get("ticket")
    if ticket_:
        return await request.app[SSE_TICKETS].redeem(ticket_)
    token = request.cookies.get(COOKIE)
    if token:
        return await request.app[AUTH].verify(token)
    raise CommandError(ErrorCode.UNAUTHORIZED, "a ticket (POST /api/sse/ticket) or the stagewire_sse cookie is needed")


def _channels(request: web.Request, limit: int) -> list[str]:
    names = request.query.getall("channel", [])
    for joined in request.query.getall("channels", []):
        names += [c for c in joined.split(",") if c]
    names = list(dict.fromkeys(names))
    if not names or len(names) > limit:
        raise CommandError(ErrorCode.BAD_REQUEST, "invalid fields", {"channel": f"1 to {limit} channels"})
    return names


async def admit(request: web.Request) -> tuple[Identity, list[str], dict[str, tuple[int, str]] | None]:
    """Every check before the stream starts: who, which channels, and where to resume them.

    Raises:
        StagewireError: the refusal, sent as the server's JSON error with its status.
    """
    settings = request.app[SETTINGS]
    node = request.app[NODE]
    if not origin_allowed(request, settings.server.allowed_origins):
        raise CommandError(ErrorCode.PERMISSION_DENIED, "origin not allowed")
    if node.shutting_down:
        raise CommandError(ErrorCode.UNAVAILABLE, "shutting down")
    identity = await _identity(request)
    names = _channels(request, settings.client.max_subscriptions)
    for name in names:
        await node.authorize_subscribe(identity, name)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    return identity, names, codec.decode_id(last) if last else None


async def stream(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    node = request.app[NODE]
    identity, names, resume = await admit(request)

    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())  # headers and the first chunk, through aiohttp
    transport = request.transport
    if transport is None:
        return response
    end = StreamEnd()
    conn = SseConnection(end, transport, request.remote, chunked=chunked, settings=settings.client,
                         flusher=node.flusher, counters=node.counters, spawn=node.spawn)
    node.adopt(conn)
    node.set_identity(conn, identity)
    try:
        await subscribe_all(conn, node, names, resume)
        await end.done.wait()
    except StagewireError as exc:
        conn.send(protocol.error_reply(None, exc))
        conn.close(CloseCode.INTERNAL if exc.code.temporary else CloseCode.BAD_REQUEST, exc.message)
        await end.done.wait()
    finally:
        try:
            # Bounded: a peer that stopped reading must not hold the handler.
            await asyncio.wait_for(response.write_eof(), CLOSE_TIMEOUT)
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            pass
        end.drained.set()
        node.unregister(conn)
        try:
            await conn.wait_closed()
        finally:
            if not conn.finished.done():
                conn.finished.set_result(None)
    return response


async def subscribe_all(conn: SseConnection, node: Node, names: list[str],
                        resume: dict[str, tuple[int, str]] | None) -> None:
    """Subscribe every channel (pending), then send the position, what was missed, and go live."""
    subs: list[tuple[str, StreamPosition | None, Subscription]] = []
    for name in names:
        since = StreamPosition(*resume[name]) if resume and name in resume else None
        subs.append((name, since, await node.subscribe(conn, name, since)))
    writer = conn.sse_writer
    summary: dict[str, dict[str, object]] = {}
    for name, since, sub in subs:
        start = since if since is not None and sub.recovered else sub.position
        writer.positions[name] = (start.offset, start.epoch)
        summary[name] = {"offset": sub.position.offset, "epoch": sub.position.epoch}
        if since is not None:
            summary[name]["recovered"] = bool(sub.recovered)
    writer.enqueue_with_id("subscribed", {"channels": summary})
    for name, since, sub in subs:
        if since is not None and not sub.recovered:
            writer.positions[name] = (sub.position.offset, sub.position.epoch)
            writer.enqueue_with_id("reload", {"channel": name, "offset": sub.position.offset,
                                               "epoch": sub.position.epoch})
        for pub in sub.publications:
            conn.send(protocol.pub_push(name, pub.offset, pub.data, pub.info))
        node.activate(conn, name, sub)


routes = [web.get("/sse", stream), web.post("/api/sse/ticket", ticket)]
