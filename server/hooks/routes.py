"""The server API's webhook routes: the outbox per webhook, its dead letters, and resending them.

    GET  /api/webhooks                        per webhook: pending and dead events
    GET  /api/webhooks/dead?webhook=&limit=   the dead letters, oldest first
    POST /api/webhooks/retry {webhook?, ids?} make dead letters pending again

Like the rest of the server API they need an API key. ``stagewire webhooks
list|retry`` does the same from the command line, on the database.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
from aiohttp import web

from models.webhook import WebhookEvent
from server.api.common import json_response, parse_body, validate
from server.api.openapi import INT, KEY_AUTH, STR, Components, _simple, obj
from server.appkeys import HOOKS, SETTINGS
from server.auth.apikeys import api_key_required
from server.hooks import outbox


class DeadQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    webhook: str | None = pydantic.Field(default=None, min_length=1, max_length=255)
    limit: int = pydantic.Field(default=100, ge=1, le=1000)


class RetryBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid")
    webhook: str | None = pydantic.Field(default=None, min_length=1, max_length=255)
    ids: list[int] | None = pydantic.Field(default=None, min_length=1, max_length=10000)


def dead_letter(row: WebhookEvent) -> dict[str, Any]:
    """A dead letter as the API and the CLI show it."""
    return {"id": row.id, "webhook": row.webhook, "event": orjson.loads(row.payload), "attempts": row.attempts,
            "last_error": row.last_error, "created_ms": row.created_ms}


@api_key_required
async def list_webhooks(request: web.Request) -> web.Response:
    counts = {entry["webhook"]: entry for entry in await outbox.summary()}
    configured = {hook.name: hook.url for hook in request.app[SETTINGS].webhooks}
    webhooks = []
    for name in sorted(configured.keys() | counts.keys()):
        entry = counts.get(name, {"pending": 0, "dead": 0, "oldest_pending_ms": None})
        webhooks.append({"webhook": name, "url": configured.get(name), "pending": entry["pending"],
                         "dead": entry["dead"], "oldest_pending_ms": entry["oldest_pending_ms"]})
    return json_response({"webhooks": webhooks})


@api_key_required
async def list_dead(request: web.Request) -> web.Response:
    query = validate(DeadQuery, dict(request.query), strict=False)
    rows = await outbox.dead_letters(query.webhook, query.limit)
    return json_response({"events": [dead_letter(row) for row in rows]})


@api_key_required
async def retry(request: web.Request) -> web.Response:
    body = await parse_body(request, RetryBody)
    count = await outbox.retry(body.webhook, body.ids)
    if HOOKS in request.app:
        request.app[HOOKS].wake(body.webhook)
    return json_response({"retried": count})


routes = [
    web.get("/api/webhooks", list_webhooks),
    web.get("/api/webhooks/dead", list_dead),
    web.post("/api/webhooks/retry", retry),
]


def describe(c: Components) -> dict[str, dict[str, Any]]:
    """The OpenAPI paths of these routes."""
    webhook = obj(["webhook", "url", "pending", "dead", "oldest_pending_ms"], webhook=STR,
                  url={"type": ["string", "null"]}, pending=INT, dead=INT,
                  oldest_pending_ms={"type": ["integer", "null"]})
    letter = obj(["id", "webhook", "event", "attempts", "last_error", "created_ms"], id=INT, webhook=STR,
                 event={"type": "object"}, attempts=INT, last_error={"type": ["string", "null"]}, created_ms=INT)
    dead = _simple("Dead letters, oldest first", "webhooks", obj(["events"], events={"type": "array", "items": letter}),
                   security=KEY_AUTH, errors=(401, 422))
    dead["parameters"] = [
        {"name": "webhook", "in": "query", "required": False, "schema": STR},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1,
                                                                        "maximum": 1000}},
    ]
    return {
        "/api/webhooks": {"get": _simple("Outbox per webhook: pending and dead events", "webhooks",
                                         obj(["webhooks"], webhooks={"type": "array", "items": webhook}),
                                         security=KEY_AUTH)},
        "/api/webhooks/dead": {"get": dead},
        "/api/webhooks/retry": {"post": _simple("Send dead letters again", "webhooks", obj(["retried"], retried=INT),
                                                security=KEY_AUTH, body=c.add(RetryBody, name="WebhookRetryBody"),
                                                errors=(401, 422))},
    }
