"""``GET /api/openapi.json``: an OpenAPI 3.1 document of the HTTP API.

Request schemas are generated from the same pydantic models that validate
the requests (the account and server API bodies here, and whatever the
handler applications register: each :class:`~server.registry.HttpRoutes`
describes its own paths with a :class:`Components`), so they cannot drift
from the code. A test checks the document against the OpenAPI 3.1
specification and that every route the app serves under ``/api/`` is in it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from aiohttp import web
from pydantic import BaseModel

from server.api import server_api
from server.api.common import json_response
from server.appkeys import API_DOCS
from server.auth import routes as auth_api

REF = "#/components/schemas/{model}"
USER_AUTH: list[dict[str, list[str]]] = [{"userToken": []}]
KEY_AUTH: list[dict[str, list[str]]] = [{"apiKey": []}]


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME, NTIME = {"type": "string", "format": "date-time"}, {"type": ["string", "null"], "format": "date-time"}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(["error"], error=obj(
        ["code", "message"], code=INT, message=STR,
        fields={"type": "object", "additionalProperties": STR}, temporary=BOOL,
    )),
    "User": obj(["id", "username", "role"], id=INT, username=STR, role={"enum": ["user", "admin"]}),
}


def response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): response("error", ref("Error")) for s in sorted(set(statuses))}


#: Every operation that reads a body may answer these: not JSON (400), too large (413).
BODY_ERRORS = (400, 413)


class Components:
    """Collects the schemas of models as the paths refer to them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = dict(RESPONSE_SCHEMAS)

    def define(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        """Add a schema written by hand; returns a reference to it."""
        self.schemas[name] = schema
        return ref(name)

    def add(self, model: type[BaseModel], *, name: str | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
        """Add the JSON schema of ``model`` (without the fields in ``drop``); returns a reference."""
        schema = model.model_json_schema(ref_template=REF)
        self.schemas.update(schema.pop("$defs", {}))
        if drop:
            schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in drop}
            schema["required"] = [k for k in schema.get("required", []) if k not in drop]
        name = name or model.__name__
        self.schemas[name] = schema
        return ref(name)


def _simple(summary: str, tag: str, ok: dict[str, Any], *, status: int = 200, body: dict[str, Any] | None = None,
            security: list[dict[str, list[str]]] | None = None, errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
    if body is not None:
        errors = (*BODY_ERRORS, *errors)
    out: dict[str, Any] = {"summary": summary, "tags": [tag],
                           "responses": {str(status): response("success", ok), **error_responses(*errors)}}
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if security is not None:
        out["security"] = security
    return out


Describe = Callable[[Components], dict[str, dict[str, Any]]]
"""An application's OpenAPI paths, its schemas added to the components it is given."""


@functools.cache
def document(extensions: Sequence[Describe] = ()) -> dict[str, Any]:
    """The OpenAPI document (built once per set of extensions: it depends on code only)."""
    c = Components()
    token = obj(["token", "expires_in", "user"], token=STR, expires_in=INT, user=ref("User"))
    user = obj(["user"], user=ref("User"))
    position = obj(["offset", "epoch"], offset=INT, epoch=STR)
    paths: dict[str, dict[str, Any]] = {
        "/api/auth/register": {"post": _simple("Create an account", "accounts", user, status=201,
                                               body=c.add(auth_api.RegisterBody), errors=(409, 422))},
        "/api/auth/login": {"post": _simple("Log in: a token", "accounts", token,
                                            body=c.add(auth_api.LoginBody), errors=(401, 422, 429))},
        "/api/auth/refresh": {"post": _simple("A fresh token for the same session", "accounts", token,
                                              security=USER_AUTH)},
        "/api/auth/logout": {"post": _simple("Revoke the session; its sockets are closed", "accounts",
                                             {"type": "object"}, security=USER_AUTH)},
        "/api/auth/password": {"post": _simple(
            "Change the password; the user's other sessions are revoked and their sockets closed", "accounts",
            {"type": "object"}, security=USER_AUTH, body=c.add(auth_api.PasswordBody), errors=(401, 422, 429))},
        "/api/me": {"get": _simple("The caller", "accounts", user, security=USER_AUTH)},
        "/api/publish": {"post": _simple("Publish to a channel", "server", position, security=KEY_AUTH,
                                         body=c.add(server_api.PublishBody), errors=(401, 404, 422, 503))},
        "/api/broadcast": {"post": _simple(
            "Publish to many channels", "server",
            obj(["results"], results={"type": "array", "items": {"type": "object"}}),
            security=KEY_AUTH, body=c.add(server_api.BroadcastBody), errors=(401, 422))},
        "/api/channels": {"get": _simple(
            "Channels with subscribers on this node", "server",
            obj(["channels"], channels={"type": "array", "items": obj(
                ["channel", "subscribers"], channel=STR, subscribers=INT)}),
            security=KEY_AUTH)},
        "/api/disconnect": {"post": _simple("Disconnect a user everywhere", "server", {"type": "object"},
                                            security=KEY_AUTH, body=c.add(server_api.DisconnectBody),
                                            errors=(401, 422))},
        "/api/openapi.json": {"get": _simple("This document", "meta", {"type": "object"}, errors=())},
        "/api/sse/ticket": {"post": {
            **_simple("A single-use ticket for GET /sse (60 s); with cookie: true, the stagewire_sse cookie too",
                      "sse", obj(["ticket", "expires_in"], ticket=STR, expires_in=INT),
                      security=USER_AUTH, errors=(401, 422)),
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": obj([], cookie={"type": "boolean"})}}},
        }},
    }
    for describe in extensions:
        for path, operations in describe(c).items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stagewire HTTP API",
            "version": "1",
            "description": "Accounts, the server API and the handler applications' routes. "
                           "The WebSocket protocol is described in docs/protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": c.schemas,
            "securitySchemes": {
                "userToken": {"type": "http", "scheme": "bearer",
                              "description": "a token from POST /api/auth/login"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a server API key"},
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(document(request.app[API_DOCS]))


routes: list[web.RouteDef] = [web.get("/api/openapi.json", openapi_json)]
