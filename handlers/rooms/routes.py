"""HTTP routes of the rooms application, over the same service as the WebSocket commands.

Every route is one row of :data:`OPERATIONS`: the method and path, the
parameters model (from :mod:`handlers.rooms.schemas`), and the service method
that does the work. The JSON body (or, for GET, the query string) and the
path parameters are merged and validated by that model, exactly as the
WebSocket command's fields are; the OpenAPI document is generated from the
same rows (:func:`describe`). Auth is a user token: ``Authorization:
Bearer <token from /api/auth/login>``. Errors are the usual
``{"error": {...}}`` (see ``server.api.errors``).

``HTTP`` is what ``handlers.REGISTRY`` hands to the app factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

from aiohttp import web
from pydantic import BaseModel

from handlers.rooms import schemas
from handlers.rooms.messages import MessagesService
from handlers.rooms.service import RoomsService
from server.api.common import bearer_token, json_body, json_response, validate
from server.api.openapi import (
    BODY_ERRORS, BOOL, INT, NTIME, REF, STR, TIME, USER_AUTH, Components, error_responses, obj, ref, response,
)
from server.appkeys import AUTH, NODE
from server.auth.identity import Identity
from server.errors import CommandError, ErrorCode
from server.registry import HttpRoutes


@dataclass(frozen=True)
class Operation:
    """One route: ``service(node).<call>(identity, model(params))``, answered with ``status``."""

    method: str
    path: str
    model: type[BaseModel]
    service: type[RoomsService] | type[MessagesService]
    call: str
    command: str  # the WebSocket command doing the same
    summary: str
    status: int = 200
    source: Literal["body", "query", "none"] = "body"


R, M = RoomsService, MessagesService
ROOM, MESSAGE = "/api/rooms/{room}", "/api/rooms/{room}/messages/{message}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/api/rooms", schemas.ListRooms, R, "list_rooms", "rooms.list",
              "The caller's rooms with unread counts, or the public rooms", source="query"),
    Operation("POST", "/api/rooms", schemas.CreateRoom, R, "create", "rooms.create",
              "Create a room; the caller owns it", status=201),
    Operation("GET", ROOM, schemas.RoomRef, R, "get", "rooms.get", "A room", source="none"),
    Operation("GET", f"{ROOM}/members", schemas.RoomRef, R, "members", "rooms.members",
              "The room's members", source="none"),
    Operation("POST", f"{ROOM}/members", schemas.Invite, R, "invite", "rooms.invite",
              "Invite a user: they become a member and are told on user:<name>", status=201),
    Operation("POST", f"{ROOM}/membership", schemas.RoomRef, R, "join", "rooms.join",
              "Join a public room", status=201, source="none"),
    Operation("DELETE", f"{ROOM}/membership", schemas.RoomRef, R, "leave", "rooms.leave",
              "Leave the room", source="none"),
    Operation("GET", f"{ROOM}/messages", schemas.ListMessages, M, "list_messages", "messages.list",
              "A page of messages, oldest first; pass next as before (or after) for the next one",
              source="query"),
    Operation("POST", f"{ROOM}/messages", schemas.SendMessage, M, "send", "messages.send",
              "Send a message", status=201),
    Operation("GET", MESSAGE, schemas.MessageRef, M, "get", "messages.get", "A message",
              source="none"),
    Operation("PATCH", MESSAGE, schemas.EditMessage, M, "edit", "messages.edit",
              "Edit a message (its author only)"),
    Operation("DELETE", MESSAGE, schemas.MessageRef, M, "delete", "messages.delete",
              "Delete a message (its author, or a room owner or admin)", source="none"),
    Operation("POST", f"{ROOM}/typing", schemas.RoomRef, M, "typing", "typing",
              "Tell the room's typing channel the caller is typing", source="none"),
    Operation("POST", f"{ROOM}/read", schemas.Read, R, "read", "read",
              "Move the caller's read marker; the unread count is pushed to user:<name>"),
)

PATH_PARAMS = ("room", "message")


async def _identity(request: web.Request) -> Identity:
    return await request.app[AUTH].verify(bearer_token(request))


def _path_ids(request: web.Request) -> dict[str, int]:
    """The numeric path parameters; a path with a non-numeric id names nothing (404)."""
    ids = {}
    for name in PATH_PARAMS:
        value = request.match_info.get(name)
        if value is None:
            continue
        if not (value.isascii() and value.isdigit() and 0 < len(value) <= 19):
            raise CommandError(ErrorCode.NOT_FOUND, f"no {name} {value!r}", {name: f"no such {name}"})
        ids[name] = int(value)
    return ids


def _handler(op: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        identity = await _identity(request)
        data: dict[str, Any]
        if op.source == "body":
            data = await json_body(request, empty_ok=True)
        elif op.source == "query":
            data = dict(request.query)
        else:
            data = {}
        data.update(_path_ids(request))
        # Query strings carry only text: there, "50" may stand for 50.
        params = validate(op.model, data, strict=op.source != "query")
        service = op.service(request.app[NODE])
        result = await getattr(service, op.call)(identity, params)
        return json_response(result, status=op.status)

    handler.__name__ = op.call
    return handler


routes: list[web.RouteDef] = [web.route(op.method, op.path, _handler(op)) for op in OPERATIONS]


# -- OpenAPI -----------------------------------------------------------------------

SCHEMAS: dict[str, dict[str, Any]] = {
    "Room": obj(
        ["id", "name", "topic", "public", "owner", "created_at", "channel", "typing_channel"],
        id=INT, name=STR, topic=STR, public=BOOL, owner=STR, created_at=TIME, channel=STR,
        typing_channel=STR, role={"enum": ["owner", "admin", "member"]}, unread=INT,
    ),
    "Member": obj(["room", "user", "role", "joined_at"], room=INT, user=STR,
                  role={"enum": ["owner", "admin", "member"]}, joined_at=TIME),
    "Message": obj(
        ["id", "room", "author", "body", "created_at", "edited_at", "deleted"],
        id=INT, room=INT, author=STR, body={"type": ["string", "null"]}, created_at=TIME,
        edited_at=NTIME, deleted=BOOL,
    ),
}

_NEXT = {"type": ["integer", "null"], "description": "cursor of the next page, null at the end"}
_ROOM_RESULTS: dict[str, dict[str, Any]] = {
    "list_rooms": obj(["rooms", "next"], rooms={"type": "array", "items": ref("Room")}, next=_NEXT),
    "create": obj(["room"], room=ref("Room")),
    "get": obj(["room"], room=ref("Room")),
    "members": obj(["members"], members={"type": "array", "items": ref("Member")}),
    "invite": obj(["member"], member=ref("Member")),
    "join": obj(["member"], member=ref("Member")),
    "leave": {"type": "object"},
    "read": obj(["room", "unread", "last_read"], room=INT, unread=INT, last_read=INT),
}
_MESSAGE_RESULTS: dict[str, dict[str, Any]] = {
    "typing": {"type": "object"},
    "list_messages": obj(["messages", "next"], messages={"type": "array", "items": ref("Message")},
                         next=_NEXT),
}


def _result_schema(op: Operation) -> dict[str, Any]:
    if op.service is MessagesService:
        return _MESSAGE_RESULTS.get(op.call) or obj(["message"], message=ref("Message"))
    return _ROOM_RESULTS[op.call]


def _operation(op: Operation, components: Components) -> dict[str, Any]:
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
            str(op.status): response("success", _result_schema(op)),
            **error_responses(401, 403, 404, 409, 422, 503, *(BODY_ERRORS if op.source == "body" else ())),
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


def describe(components: Components) -> dict[str, dict[str, Any]]:
    """The OpenAPI paths of the rooms routes."""
    for name, schema in SCHEMAS.items():
        components.define(name, schema)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    return paths


HTTP = HttpRoutes(routes=routes, describe=describe)
