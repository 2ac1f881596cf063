"""The Pusher HTTP API, signed as Pusher's (see :mod:`server.pusher.signing`).

===============================================================  ===========================================
route                                                            answer
===============================================================  ===========================================
``POST /apps/{id}/events``                                       ``{}``, or ``{"channels": {name: info}}``
``POST /apps/{id}/batch_events``                                 ``{}``, or ``{"batch": [info, ...]}``
``GET /apps/{id}/channels?filter_by_prefix=&info=user_count``    ``{"channels": {name: {...}}}``
``GET /apps/{id}/channels/{name}?info=...``                      ``{"occupied", "user_count"?, ...}``
``GET /apps/{id}/channels/{name}/users``                         ``{"users": [{"id"}]}`` (presence only)
``POST /apps/{id}/users/{user_id}/terminate_connections``        ``{}``
===============================================================  ===========================================

Errors are plain text with Pusher's statuses: 400 bad request (and over a
limit: 100 channels per event, 200 characters per name, 10 events per batch),
401 a bad signature, key or timestamp (more than 600 s off), 403 a disabled
app, 404 an unknown app, 413 data over ``max_event_size``, 503 the broker
cannot publish now. Events are published through the node like any other
publication: the channel's stream numbers and keeps them, and native
subscribers receive them too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from server.appkeys import NODE, PUSHER
from server.config import PusherAppSettings
from server.errors import StagewireError
from server.pusher import protocol as pp
from server.pusher.signing import SignatureError, check_request

MAX_CHANNELS = 100
MAX_BATCH = 10

Route = Callable[[web.Request, PusherAppSettings, Any], Awaitable[web.Response]]


class HttpError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def signed(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Find the app (by id, or by ``auth_key`` where the path has none), check the signature, parse the body."""

    async def handler(request: web.Request) -> web.Response:
        try:
            apps = request.app[PUSHER].apps
            app_id = request.match_info.get("app_id")
            app = apps.by_id(app_id) if app_id is not None else apps.by_key(request.query.get("auth_key", ""))
            if app is None:
                raise HttpError(404, "Unknown app")
            body = await request.read()
            try:
                check_request(app, request.method, request.path, request.query, body, time.time())
            except SignatureError as exc:
                raw = request.raw_path.partition("?")[0]
                if raw == request.path:
                    raise HttpError(401, str(exc)) from None
                try:
                    check_request(app, request.method, raw, request.query, body, time.time())
                except SignatureError:
                    raise HttpError(401, str(exc)) from None
            if not app.enabled:
                raise HttpError(403, "App is disabled")
            payload: Any = None
            if request.method == "POST":
                try:
                    payload = orjson.loads(body) if body.strip() else {}
                except orjson.JSONDecodeError:
                    raise HttpError(400, "The body is not valid JSON") from None
                if not isinstance(payload, dict):
                    raise HttpError(400, "The body must be a JSON object")
            return await route(request, app, payload)
        except HttpError as exc:
            return web.Response(status=exc.status, text=exc.text)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="Request body too large")
        except StagewireError as exc:
            status = 503 if exc.code.temporary else 400
            return web.Response(status=status, text=exc.message)

    handler.__name__ = route.__name__
    return handler


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _attributes(request: web.Request, allowed: set[str]) -> set[str]:
    raw = request.query.get("info", "")
    attrs = {a.strip() for a in raw.split(",") if a.strip()}
    unknown = attrs - allowed
    if unknown:
        raise HttpError(400, f"Unsupported info attributes: {', '.join(sorted(unknown))}")
    return attrs


def _channel(name: Any) -> str:
    if not pp.valid_channel(name):
        raise HttpError(400, f"Invalid channel name {str(name)[:210]!r}: up to {pp.MAX_NAME} of A-Z a-z 0-9 _ - = @ , . ;")
    assert isinstance(name, str)
    return name


class _Event:
    """One event of a request body, checked against Pusher's limits."""

    def __init__(self, app: PusherAppSettings, body: dict[str, Any], *, batch: bool) -> None:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise HttpError(400, "name: a string is required")
        if len(name) > pp.MAX_NAME:
            raise HttpError(400, f"Event name too long: at most {pp.MAX_NAME} characters")
        if name.startswith(("pusher:", "pusher_internal:")):
            raise HttpError(400, "Event names starting with pusher: are reserved")
        channels: Any
        if batch or "channel" in body:
            channels = [body.get("channel")]
        else:
            channels = body.get("channels")
            if not isinstance(channels, list) or not channels:
                raise HttpError(400, "channels: a list of channel names is required")
            if len(channels) > MAX_CHANNELS:
                raise HttpError(400, f"Too many channels: at most {MAX_CHANNELS} per event")
        data = body.get("data")
        if not isinstance(data, str):
            raise HttpError(400, "data: a string is required")
        if len(data.encode()) > app.max_event_size:
            raise HttpError(413, f"Payload too large: data is over {app.max_event_size} bytes")
        socket_id = body.get("socket_id")
        if socket_id is not None and (not isinstance(socket_id, str) or not pp.SOCKET_ID_RE.match(socket_id)):
            raise HttpError(400, "Invalid socket_id")
        info = body.get("info")
        if info is not None and not isinstance(info, str):
            raise HttpError(400, "info: a comma-separated string is required")
        self.name = name
        self.channels = [_channel(c) for c in channels]
        self.data = pp.data_from_pusher(data)
        self.info: dict[str, Any] = {"event": name}
        if socket_id:
            self.info["socket_id"] = socket_id
        self.attributes = {a.strip() for a in (info or "").split(",") if a.strip()}
        unknown = self.attributes - {"user_count", "subscription_count"}
        if unknown:
            raise HttpError(400, f"Unsupported info attributes: {', '.join(sorted(unknown))}")


async def _publish(request: web.Request, app: PusherAppSettings, event: _Event) -> dict[str, Any]:
    node = request.app[NODE]
    await asyncio.gather(*(node.publish(f"{app.namespace}:{c}", event.data, event.info) for c in event.channels))
    if not event.attributes:
        return {}
    return await _infos(request, app, event.channels, event.attributes)


async def _infos(request: web.Request, app: PusherAppSettings, channels: list[str], attributes: set[str],
                 occupancy: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """``user_count`` (presence channels) and ``subscription_count`` of each channel; the index is read once."""
    svc = request.app[PUSHER]
    if "subscription_count" in attributes and occupancy is None:
        occupancy = await svc.members.occupancy(app.namespace)
    out: dict[str, dict[str, Any]] = {}
    for channel in channels:
        info: dict[str, Any] = {}
        if "user_count" in attributes and pp.is_presence(channel):
            _, users = await svc.node.presence_stats(f"{app.namespace}:{channel}")
            info["user_count"] = users
        if "subscription_count" in attributes and occupancy is not None:
            info["subscription_count"] = occupancy.get(channel, 0)
        out[channel] = info
    return out


@signed
async def events(request: web.Request, app: PusherAppSettings, body: dict[str, Any]) -> web.Response:
    event = _Event(app, body, batch=False)
    info = await _publish(request, app, event)
    return _json({"channels": info} if event.attributes else {})


@signed
async def batch_events(request: web.Request, app: PusherAppSettings, body: dict[str, Any]) -> web.Response:
    batch = body.get("batch")
    if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
        raise HttpError(400, "batch: a list of events is required")
    if len(batch) > MAX_BATCH:
        raise HttpError(400, f"Batch too large: at most {MAX_BATCH} events")
    checked = [_Event(app, e, batch=True) for e in batch]
    results = await asyncio.gather(*(_publish(request, app, e) for e in checked))
    if not any(e.attributes for e in checked):
        return _json({})
    return _json({"batch": [r.get(e.channels[0], {}) for e, r in zip(checked, results)]})


@signed
async def channels(request: web.Request, app: PusherAppSettings, body: Any) -> web.Response:
    prefix = request.query.get("filter_by_prefix", "")
    attributes = _attributes(request, {"user_count"})
    if "user_count" in attributes and not prefix.startswith("presence-"):
        raise HttpError(400, "user_count may only be requested with filter_by_prefix=presence-")
    occupied = await request.app[PUSHER].members.occupancy(app.namespace)
    names = sorted(c for c in occupied if c.startswith(prefix) and not c.startswith("#"))
    return _json({"channels": await _infos(request, app, names, attributes, occupied)})


@signed
async def channel(request: web.Request, app: PusherAppSettings, body: Any) -> web.Response:
    name = _channel(request.match_info["channel_name"])
    attributes = _attributes(request, {"user_count", "subscription_count"})
    if "user_count" in attributes and not pp.is_presence(name):
        raise HttpError(400, "user_count is only for presence channels")
    occupancy = await request.app[PUSHER].members.occupancy(app.namespace)
    subscriptions = occupancy.get(name, 0)
    info = (await _infos(request, app, [name], attributes, occupancy))[name]
    occupied = subscriptions > 0 or info.get("user_count", 0) > 0
    return _json({"occupied": occupied, **info})


@signed
async def users(request: web.Request, app: PusherAppSettings, body: Any) -> web.Response:
    name = _channel(request.match_info["channel_name"])
    if not pp.is_presence(name):
        raise HttpError(400, "Users are listed for presence channels only")
    present = await request.app[NODE].presence_of(f"{app.namespace}:{name}")
    return _json({"users": [{"id": u} for u in sorted(present)]})


@signed
async def terminate_connections(request: web.Request, app: PusherAppSettings, body: Any) -> web.Response:
    user_id = request.match_info["user_id"]
    if not pp.valid_user_id(user_id):
        raise HttpError(400, "Invalid user id")
    await request.app[PUSHER].terminate(app.id, user_id)
    return _json({})


routes = [
    web.post("/apps/{app_id}/events", events),
    web.post("/apps/{app_id}/batch_events", batch_events),
    web.get("/apps/{app_id}/channels", channels),
    web.get("/apps/{app_id}/channels/{channel_name}", channel),
    web.get("/apps/{app_id}/channels/{channel_name}/users", users),
    web.post("/apps/{app_id}/users/{user_id}/terminate_connections", terminate_connections),
    # Where pusher-http-python 3.3 sends terminate_user_connections (no /apps/{id}):
    # the app is the request's auth_key.
    web.post("/users/{user_id}/terminate_connections", terminate_connections),
]
