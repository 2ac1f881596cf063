"""The server HTTP API, for backends and dashboards.

Authenticated with an API key from ``[api] keys`` in the
``Authorization: Bearer <key>`` header, compared in constant time. Publishing
here ignores the namespace's client publish rule: the server may always publish.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

import pydantic
from aiohttp import web

from server import protocol
from server.api import common
from server.appkeys import NODE, SETTINGS
from server.errors import CommandError, ErrorCode, StagewireError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PublishBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    channel: str = pydantic.Field(min_length=3, max_length=255)
    data: Any = pydantic.Field(...)
    idempotency_key: str | None = pydantic.Field(default=None, min_length=1, max_length=128)


class BroadcastBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    channels: list[pydantic.constr(min_length=3, max_length=255)] = pydantic.Field(  # type: ignore[valid-type]
        min_length=1, max_length=1000
    )
    data: Any = pydantic.Field(...)


class DisconnectBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    user: str = pydantic.Field(min_length=1, max_length=64)
    reason: str = pydantic.Field(default="disconnected by the server", max_length=200)


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    """Compare against every configured key in constant time, whatever matches first."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def api_key_required(handler: Handler) -> Handler:
    """Refuse (401) a request without one of the configured API keys; JSON errors."""

    @common.json_handler
    async def wrapper(request: web.Request) -> web.StreamResponse:
        keys = request.app[SETTINGS].api.keys
        if not keys:
            raise CommandError(ErrorCode.UNAUTHORIZED, "no API keys configured: set [api] keys")
        if not key_matches(common.bearer_token(request), keys):
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid API key")
        return await handler(request)

    return wrapper


@api_key_required
async def publish(request: web.Request) -> web.Response:
    body = await common.parse_body(request, PublishBody)
    protocol.check_json_compatible(body.data)
    position = await request.app[NODE].publish(
        body.channel, body.data, idempotency_key=body.idempotency_key
    )
    return web.json_response({"offset": position.offset, "epoch": position.epoch})


@api_key_required
async def broadcast(request: web.Request) -> web.Response:
    body = await common.parse_body(request, BroadcastBody)
    protocol.check_json_compatible(body.data)
    node = request.app[NODE]
    results = []
    for channel in body.channels:
        try:
            position = await node.publish(channel, body.data)
            results.append({"channel": channel, "offset": position.offset, "epoch": position.epoch})
        except StagewireError as exc:
            results.append({"channel": channel, "error": exc.to_dict()})
    return web.json_response({"results": results})


@api_key_required
async def list_channels(request: web.Request) -> web.Response:
    counts = request.app[NODE].channel_counts()
    return web.json_response(
        {"channels": [{"channel": c, "subscribers": n} for c, n in sorted(counts.items())]}
    )


@api_key_required
async def disconnect(request: web.Request) -> web.Response:
    body = await common.parse_body(request, DisconnectBody)
    await request.app[NODE].disconnect_user(body.user, body.reason)
    return web.json_response({})


routes = [
    web.post("/api/publish", publish),
    web.post("/api/broadcast", broadcast),
    web.get("/api/channels", list_channels),
    web.post("/api/disconnect", disconnect),
]
