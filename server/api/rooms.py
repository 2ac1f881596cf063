"""HTTP routes of the rooms application, over the same service as the WebSocket commands.

Every route is one row of :data:`OPERATIONS`: the method and path, the
parameters model (from :mod:`handlers.rooms.schemas`), and the service method
that does the work. The JSON body (or, for GET, the query string) and the
path parameters are merged and validated by that model, exactly as the
WebSocket command's fields are; the OpenAPI document is generated from the
same rows. Auth is a user token: ``Authorization: Bearer <token from
/api/auth/login>``. Errors are the usual ``{"error": {...}}`` (see
``server.api.common``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from handlers.rooms import schemas
from handlers.rooms.messages import MessagesService
from handlers.rooms.service import RoomsService
from server.api.common import bearer_token, json_handler, json_response
from server.appkeys import AUTH, NODE
from server.auth import Identity
from server.errors import CommandError, ErrorCode, ProtocolError
from server.validation import field_errors


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


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body; an empty body is ``{}``."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise CommandError(ErrorCode.LIMIT_EXCEEDED, "request body too large") from None
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("request body must be a JSON object")
    return data


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


def _handler(op: Operation):
    @json_handler
    async def handler(request: web.Request) -> web.Response:
        identity = await _identity(request)
        if op.source == "body":
            data = await _body(request)
        elif op.source == "query":
            data = dict(request.query)
        else:
            data = {}
        data.update(_path_ids(request))
        try:
            # Query strings carry only text: there, "50" may stand for 50.
            params = op.model.model_validate(data, strict=op.source != "query")
        except ValidationError as exc:
            raise ProtocolError("invalid fields", fields=field_errors(exc)) from None
        service = op.service(request.app[NODE])
        result = await getattr(service, op.call)(identity, params)
        return json_response(result, status=op.status)

    handler.__name__ = op.call
    return handler


routes: list[web.RouteDef] = [web.route(op.method, op.path, _handler(op)) for op in OPERATIONS]
