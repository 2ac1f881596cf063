"""``GET /api/openapi.json``: an OpenAPI 3.1 document of the HTTP API.

Request schemas are generated from the same pydantic models that validate
the requests (the rooms operations table, the account and server API
bodies), so they cannot drift from the code; response schemas are written
here. A test checks the document against the OpenAPI 3.1 specification and
that every route the app serves under ``/api/`` is in it.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server.api import auth as auth_api
from server.api import server_api
from server.api.common import json_response
from server.api.rooms import OPERATIONS, PATH_PARAMS, Operation

REF = "#/components/schemas/{model}"
USER_AUTH = [{"userToken": []}]
KEY_AUTH = [{"apiKey": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME, _NTIME = {"type": "string", "format": "date-time"}, {"type": ["string", "null"], "format": "date-time"}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(["error"], error=_obj(
        ["code", "message"], code=_INT, message=_STR,
        fields={"type": "object", "additionalProperties": _STR}, temporary=_BOOL,
    )),
    "User": _obj(["id", "username", "role"], id=_INT, username=_STR, role={"enum": ["user", "admin"]}),
    "Room": _obj(
        ["id", "name", "topic", "public", "owner", "created_at", "channel", "typing_channel"],
        id=_INT, name=_STR, topic=_STR, public=_BOOL, owner=_STR, created_at=_TIME, channel=_STR,
        typing_channel=_STR, role={"enum": ["owner", "admin", "member"]}, unread=_INT,
    ),
    "Member": _obj(["room", "user", "role", "joined_at"], room=_INT, user=_STR,
                   role={"enum": ["owner", "admin", "member"]}, joined_at=_TIME),
    "Message": _obj(
        ["id", "room", "author", "body", "created_at", "edited_at", "deleted"],
        id=_INT, room=_INT, author=_STR, body={"type": ["string", "null"]}, created_at=_TIME,
        edited_at=_NTIME, deleted=_BOOL,
    ),
}

_NEXT = {"type": ["integer", "null"], "description": "cursor of the next page, null at the end"}
_ROOM_RESULTS: dict[str, dict[str, Any]] = {
    "list_rooms": _obj(["rooms", "next"], rooms={"type": "array", "items": _ref("Room")}, next=_NEXT),
    "create": _obj(["room"], room=_ref("Room")),
    "get": _obj(["room"], room=_ref("Room")),
    "members": _obj(["members"], members={"type": "array", "items": _ref("Member")}),
    "invite": _obj(["member"], member=_ref("Member")),
    "join": _obj(["member"], member=_ref("Member")),
    "leave": {"type": "object"},
    "typing": {"type": "object"},
    "read": _obj(["room", "unread", "last_read"], room=_INT, unread=_INT, last_read=_INT),
}
_MESSAGE_RESULTS: dict[str, dict[str, Any]] = {
    "list_messages": _obj(["messages", "next"], messages={"type": "array", "items": _ref("Message")},
                          next=_NEXT),
}


def _result_schema(op: Operation) -> dict[str, Any]:
    if op.service.__name__ == "MessagesService":
        return _MESSAGE_RESULTS.get(op.call) or _obj(["message"], message=_ref("Message"))
    return _ROOM_RESULTS[op.call]


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _response("error", _ref("Error")) for s in statuses}


class _Components:
    """Collects the schemas of models as the paths refer to them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = dict(RESPONSE_SCHEMAS)

    def add(self, model: type[BaseModel], *, name: str | None = None, drop: tuple[str, ...] = ()) -> dict:
        schema = model.model_json_schema(ref_template=REF)
        self.schemas.update(schema.pop("$defs", {}))
        if drop:
            schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in drop}
            schema["required"] = [k for k in schema.get("required", []) if k not in drop]
        name = name or model.__name__
        self.schemas[name] = schema
        return _ref(name)


def _rooms_operation(op: Operation, components: _Components) -> dict[str, Any]:
    path_params = [p for p in PATH_PARAMS if "{" + p + "}" in op.path]
    out: dict[str, Any] = {
        "operationId": op.command.replace(".", "_"),
        "summary": op.summary,
        "description": f"Same as the WebSocket command `{op.command}`.",
        "tags": ["rooms"],
        "security": USER_AUTH,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
            for p in path_params
        ],
        "responses": {
            str(op.status): _response("success", _result_schema(op)),
            **_errors(401, 403, 404, 409, 422, 503),
        },
    }
    if op.source == "query":
        fields = op.model.model_json_schema(ref_template=REF)["properties"]
        out["parameters"] += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in fields.items() if name not in path_params
        ]
    elif op.source == "body":
        body_name = op.model.__name__ + ("Body" if path_params else "")
        schema = components.add(op.model, name=body_name, drop=tuple(path_params))
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return out


def _simple(summary: str, tag: str, ok: dict[str, Any], *, status: int = 200, body: dict | None = None,
            security: list | None = None, errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "tags": [tag],
                           "responses": {str(status): _response("success", ok), **_errors(*errors)}}
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if security is not None:
        out["security"] = security
    return out


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once: it depends on code only)."""
    c = _Components()
    token = _obj(["token", "expires_in", "user"], token=_STR, expires_in=_INT, user=_ref("User"))
    user = _obj(["user"], user=_ref("User"))
    position = _obj(["offset", "epoch"], offset=_INT, epoch=_STR)
    paths: dict[str, dict[str, Any]] = {
        "/api/auth/register": {"post": _simple("Create an account", "accounts", user, status=201,
                                               body=c.add(auth_api.RegisterBody), errors=(409, 422))},
        "/api/auth/login": {"post": _simple("Log in: a token", "accounts", token,
                                            body=c.add(auth_api.LoginBody), errors=(401, 422, 429))},
        "/api/auth/refresh": {"post": _simple("A fresh token for the same session", "accounts", token,
                                              security=USER_AUTH)},
        "/api/auth/logout": {"post": _simple("Revoke the session; its sockets are closed", "accounts",
                                             {"type": "object"}, security=USER_AUTH)},
        "/api/me": {"get": _simple("The caller", "accounts", user, security=USER_AUTH)},
        "/api/publish": {"post": _simple("Publish to a channel", "server", position, security=KEY_AUTH,
                                         body=c.add(server_api.PublishBody), errors=(401, 404, 422, 503))},
        "/api/broadcast": {"post": _simple(
            "Publish to many channels", "server",
            _obj(["results"], results={"type": "array", "items": {"type": "object"}}),
            security=KEY_AUTH, body=c.add(server_api.BroadcastBody), errors=(401, 422))},
        "/api/channels": {"get": _simple(
            "Channels with subscribers on this node", "server",
            _obj(["channels"], channels={"type": "array", "items": _obj(
                ["channel", "subscribers"], channel=_STR, subscribers=_INT)}),
            security=KEY_AUTH)},
        "/api/disconnect": {"post": _simple("Disconnect a user everywhere", "server", {"type": "object"},
                                            security=KEY_AUTH, body=c.add(server_api.DisconnectBody),
                                            errors=(401, 422))},
        "/api/openapi.json": {"get": _simple("This document", "meta", {"type": "object"}, errors=())},
    }
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _rooms_operation(op, c)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stagewire HTTP API",
            "version": "1",
            "description": "Accounts, the server API and the rooms application. The WebSocket "
                           "protocol is described in docs/protocol.md.",
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
    return json_response(document())


routes: list[web.RouteDef] = [web.get("/api/openapi.json", openapi_json)]
