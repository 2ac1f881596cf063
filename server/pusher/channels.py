"""What a Pusher connection may send, one handler per event (the :data:`HANDLERS` table).

Each handler gets the node's :class:`~server.pusher.service.PusherService`,
the connection and the decoded event; it queues what the client is owed and
raises :class:`~server.pusher.protocol.PusherError` for a refusal, which the
shell sends as ``pusher:error`` (subscriptions answer with
``pusher:subscription_error`` instead).

Subscriptions go through ``node.subscribe``/``node.activate`` like native
ones: the reply (``pusher_internal:subscription_succeeded``) is queued before
anything published meanwhile, and nothing is lost or repeated between them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson

from server.broker.base import StreamPosition
from server.errors import CloseCode, ErrorCode, StagewireError
from server.protocol import pub_push
from server.pusher import protocol as pp
from server.pusher import signing
from server.pusher.connection import Member, PusherConnection
from server.pusher.events import PusherEvent

if TYPE_CHECKING:
    from server.pusher.service import PusherService

log = logging.getLogger("stagewire.pusher")

Handler = Callable[["PusherService", PusherConnection, pp.ClientEvent], Awaitable[None]]

# A refused subscription's status, by the node's error code.
_STATUS = {
    ErrorCode.LIMIT_EXCEEDED: ("LimitReached", 4100),
    ErrorCode.UNAVAILABLE: ("ServerError", 503),
    ErrorCode.PERMISSION_DENIED: ("AuthError", 403),
    ErrorCode.UNKNOWN_CHANNEL: ("InvalidChannel", 404),
}


async def ping(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    conn.send(pp.pong())


async def ignore(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    return None


async def subscribe(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    channel = data.get("channel")
    if not pp.valid_channel(channel):
        raise pp.PusherError("pusher:subscribe: a valid channel name is required")
    assert isinstance(channel, str)
    try:
        await _subscribe(svc, conn, channel, data)
    except pp.SubscriptionError as exc:
        conn.send(pp.subscription_error(channel, exc))
    except StagewireError as exc:
        kind, status = _STATUS.get(exc.code, ("BadRequest", 400))
        conn.send(pp.subscription_error(channel, pp.SubscriptionError(kind, exc.message, status)))


async def _subscribe(svc: PusherService, conn: PusherConnection, channel: str, data: dict[str, Any]) -> None:
    node = svc.node
    stagewire = conn.channel(channel)
    if stagewire in conn.subscriptions:
        raise pp.SubscriptionError("BadRequest", f"already subscribed to {channel}", 400)
    member = _check_access(conn, channel, data)
    sub = await node.subscribe(conn, stagewire)
    try:
        await svc.members.subscribed(conn, channel)
        members = await svc.members.join(conn, channel, member) if member is not None else None
        cached = None
        if pp.is_cache(channel):
            pubs, _ = await node.history(stagewire, None, 1, True)
            cached = pubs[0] if pubs else None
    except BaseException:
        await _undo(svc, conn, channel)
        raise
    conn.send(pp.subscription_succeeded(channel, pp.presence_data(members) if members is not None else None))
    if pp.is_cache(channel):
        if cached is not None:
            conn.send(pub_push(stagewire, cached.offset, cached.data, cached.info))
            if cached.offset > sub.position.offset:
                sub.position = StreamPosition(cached.offset, sub.position.epoch)
        else:
            conn.send(pp.cache_miss(channel))
            svc.emit(conn, PusherEvent("cache_miss", channel))
    node.activate(conn, stagewire, sub)


def _check_access(conn: PusherConnection, channel: str, data: dict[str, Any]) -> Member | None:
    """Check the subscription's signature; the member entry for a presence channel."""
    user = pp.user_of_channel(channel)
    if user is not None:
        if conn.user_id != user:
            raise pp.SubscriptionError("AuthError", "sign in as this user first", 403)
        return None
    if not pp.is_private(channel):
        return None
    channel_data = data.get("channel_data")
    if channel_data is not None and not isinstance(channel_data, str):
        raise pp.SubscriptionError("BadRequest", "channel_data must be a JSON string", 400)
    presence = pp.is_presence(channel)
    expected = signing.channel_auth(conn.app, conn.socket_id, channel, channel_data if presence else None)
    if not signing.auth_matches(data.get("auth"), expected):
        raise pp.auth_error(f"invalid signature for {channel}")
    if not presence:
        return None
    if channel_data is None:
        # Signed in users may join without channel_data: they are who they signed in as.
        if conn.user_id is None:
            raise pp.SubscriptionError("AuthError", "presence channels need channel_data or a sign-in", 401)
        return Member(conn.user_id, _user_info(conn, _load(conn.user_data or "{}").get("user_info")))
    parsed = _load(channel_data)
    user_id = parsed.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not pp.valid_user_id(user_id):
        raise pp.SubscriptionError("BadRequest", "channel_data needs a user_id string", 400)
    assert isinstance(user_id, str)
    return Member(user_id, _user_info(conn, parsed.get("user_info")))


def _load(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise pp.SubscriptionError("BadRequest", "channel_data is not valid JSON", 400) from None
    if not isinstance(value, dict):
        raise pp.SubscriptionError("BadRequest", "channel_data must be a JSON object", 400)
    return value


def _user_info(conn: PusherConnection, info: Any) -> str | None:
    if info is None:
        return None
    text = orjson.dumps(info).decode()
    if len(text.encode()) > conn.app.max_presence_member_size:
        raise pp.SubscriptionError(
            "LimitReached", f"user_info is over {conn.app.max_presence_member_size} bytes", 413)
    return text


async def _undo(svc: PusherService, conn: PusherConnection, channel: str) -> None:
    stagewire = conn.channel(channel)
    try:
        if stagewire in conn.subscriptions:
            await svc.node.unsubscribe(conn, stagewire)
        await svc.members.leave(conn, channel)
        await svc.members.unsubscribed(conn, channel)
    except StagewireError:
        log.warning("undoing the subscription to %s failed; its entries expire", stagewire, exc_info=True)


async def unsubscribe(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    channel = data.get("channel")
    if not isinstance(channel, str) or conn.channel(channel) not in conn.subscriptions:
        return  # as Pusher: unsubscribing from a channel one is not in is no error
    await svc.node.unsubscribe(conn, conn.channel(channel))
    await svc.members.leave(conn, channel)
    await svc.members.unsubscribed(conn, channel)


async def signin(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    user_data = data.get("user_data")
    parsed: dict[str, Any] = {}
    if isinstance(user_data, str):
        try:
            loaded = orjson.loads(user_data)
            parsed = loaded if isinstance(loaded, dict) else {}
        except orjson.JSONDecodeError:
            pass
    user_id = parsed.get("id")
    if not isinstance(user_data, str) or not pp.valid_user_id(user_id) or not signing.auth_matches(
        data.get("auth"), signing.user_auth(conn.app, conn.socket_id, user_data)
    ):
        # As Pusher: a failed sign-in ends the connection (4009, not retried as it is).
        conn.close(CloseCode.UNAUTHORIZED, "invalid sign-in: check auth and user_data")
        return
    assert isinstance(user_id, str) and isinstance(user_data, str)
    svc.signed_in(conn, user_id, user_data)
    conn.send(pp.signin_success(user_data))


async def client_event(svc: PusherService, conn: PusherConnection, event: pp.ClientEvent) -> None:
    app = conn.app
    channel = event.channel
    if not app.client_events:
        raise pp.PusherError("client events are not enabled for this app", pp.NOT_ALLOWED)
    if channel is None or not pp.is_private(channel) or pp.is_encrypted(channel):
        raise pp.PusherError("client events are for private and presence channels only", pp.NOT_ALLOWED)
    stagewire = conn.channel(channel)
    if stagewire not in conn.subscriptions:
        raise pp.PusherError(f"subscribe to {channel} before sending client events", pp.NOT_ALLOWED)
    if svc.node.namespace(stagewire).publish == "server":
        raise pp.PusherError(f"only the server publishes on {channel}", pp.NOT_ALLOWED)
    if len(event.event) > pp.MAX_NAME:
        raise pp.PusherError(f"event names have at most {pp.MAX_NAME} characters")
    if not conn.allow_client_event():
        raise pp.PusherError(f"client events are limited to {app.client_event_rate:g} per second", pp.RATE_LIMITED)
    size = len(orjson.dumps(event.data))
    if size > app.max_event_size:
        raise pp.PusherError(f"client event data is over {app.max_event_size} bytes", pp.TOO_LARGE)
    info: dict[str, Any] = {"event": event.event, "socket_id": conn.socket_id}
    member = conn.members.get(channel)
    if member is not None:
        info["user_id"] = member.user_id
    await svc.node.publish(stagewire, event.data, info)
    svc.emit(conn, PusherEvent("client_event", channel, user_id=info.get("user_id"), event=event.event,
                               data=pp.data_to_pusher(event.data), socket_id=conn.socket_id))


async def forget(svc: PusherService, conn: PusherConnection, channels: list[str]) -> None:
    """After a connection ended: its members leave, its subscriptions and quota entry go."""
    try:
        for channel in list(conn.members):
            await svc.members.leave(conn, channel)
        for channel in channels:
            await svc.members.unsubscribed(conn, channel)
        await svc.members.release(conn.app, conn.socket_id)
    except StagewireError:
        log.warning("forgetting Pusher connection %s failed; its entries expire", conn.socket_id, exc_info=True)


HANDLERS: dict[str, Handler] = {
    "pusher:ping": ping,
    "pusher:pong": ignore,
    "pusher:subscribe": subscribe,
    "pusher:unsubscribe": unsubscribe,
    "pusher:signin": signin,
}
"""Pusher event → handler; ``client-*`` events go to :func:`client_event`."""
