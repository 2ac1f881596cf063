"""The server HTTP API, for backends and dashboards.

Authenticated with an API key in the ``Authorization: Bearer <key>`` header:
one of ``[api] keys`` (compared in constant time), or a database key made with
``stagewire apikey create`` that is not revoked (found by its SHA-256, which
is compared in constant time too). Publishing here ignores the namespace's
client publish rule: the server may always publish.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

import pydantic
from aiohttp import web

from models.apikey import ApiKey, key_hash
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


async def stored_key_matches(presented: str) -> bool:
    """Whether ``presented`` is a database key that has not been revoked."""
    digest = key_hash(presented)
    row = await ApiKey.get_or_none(key_hash=digest, revoked_at__isnull=True)
    # Decided here, exactly and in constant time, not by the database's string
    # comparison (collations may fold case or ignore trailing spaces).
    return row is not None and hmac.compare_digest(row.key_hash, digest)


def api_key_required(handler: Handler) -> Handler:
    """Refuse (401) a request without a configured or stored API key; JSON errors."""

    @common.json_handler
    async def wrapper(request: web.Request) -> web.StreamResponse:
        keys = request.app[SETTINGS].api.keys
        presented = common.bearer_token(request)
        if not key_matches(presented, keys) and not await stored_key_matches(presented):
            if not keys and not await ApiKey.filter(revoked_at__isnull=True).exists():
                raise CommandError(ErrorCode.UNAUTHORIZED,
                                   "no API keys: set [api] keys or run stagewire apikey create")
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
