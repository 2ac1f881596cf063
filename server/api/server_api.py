"""The server HTTP API, for backends and dashboards.

Authenticated with an API key in the ``Authorization: Bearer <key>`` header:
one of ``[api] keys`` (compared in constant time), or a database key made with
``stagewire apikey create`` that is not revoked (found by its SHA-256, which
is compared in constant time too). Publishing here ignores the namespace's
client publish rule: the server may always publish. An optional ``event``
names the publication for Pusher clients (their event name; it is the
publication's ``info.event``, see docs/pusher.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from aiohttp import web

from server import protocol
from server.api.common import json_response, parse_body
from server.appkeys import NODE
from server.channels import ChannelName, publish_result
from server.auth.apikeys import api_key_required
from server.errors import StagewireError


def _event_name(name: str | None) -> str | None:
    """A Pusher event name; pusher: and pusher_internal: are the protocol's own."""
    if name is not None and name.startswith(("pusher:", "pusher_internal:")):
        raise ValueError("names starting with pusher: are reserved")
    return name


EventName = Annotated[str | None, pydantic.Field(default=None, min_length=1, max_length=200),
                      pydantic.AfterValidator(_event_name)]


def _info(event: str | None) -> dict[str, Any] | None:
    return {"event": event} if event is not None else None


class PublishBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    channel: ChannelName
    data: Any = pydantic.Field(...)
    idempotency_key: str | None = pydantic.Field(default=None, min_length=1, max_length=128)
    event: EventName = None


class BroadcastBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    # Each channel is checked on its own: a bad one is an error in its result, not a 422.
    channels: list[Annotated[str, pydantic.Field(min_length=3, max_length=255)]] = pydantic.Field(
        min_length=1, max_length=1000
    )
    data: Any = pydantic.Field(...)
    event: EventName = None


class DisconnectBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    user: str = pydantic.Field(min_length=1, max_length=64)
    reason: str = pydantic.Field(default="disconnected by the server", max_length=200)


@api_key_required
async def publish(request: web.Request) -> web.Response:
    body = await parse_body(request, PublishBody)
    protocol.check_json_compatible(body.data)
    position = await request.app[NODE].publish(
        body.channel, body.data, _info(body.event), idempotency_key=body.idempotency_key
    )
    return json_response(publish_result(position))


@api_key_required
async def broadcast(request: web.Request) -> web.Response:
    body = await parse_body(request, BroadcastBody)
    protocol.check_json_compatible(body.data)
    node = request.app[NODE]
    results = []
    for channel in body.channels:
        try:
            position = await node.publish(channel, body.data, _info(body.event))
            results.append({"channel": channel, **publish_result(position)})
        except StagewireError as exc:
            results.append({"channel": channel, "error": exc.to_dict()})
    return json_response({"results": results})


@api_key_required
async def list_channels(request: web.Request) -> web.Response:
    counts = request.app[NODE].channel_counts()
    return json_response(
        {"channels": [{"channel": c, "subscribers": n} for c, n in sorted(counts.items())]}
    )


@api_key_required
async def disconnect(request: web.Request) -> web.Response:
    body = await parse_body(request, DisconnectBody)
    await request.app[NODE].disconnect_user(body.user, body.reason)
    return json_response({})


routes = [
    web.post("/api/publish", publish),
    web.post("/api/broadcast", broadcast),
    web.get("/api/channels", list_channels),
    web.post("/api/disconnect", disconnect),
]
