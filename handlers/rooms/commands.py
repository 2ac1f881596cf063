"""The rooms WebSocket commands: thin wrappers from a command to the service.

Each command's parameters are validated by its model in
:mod:`handlers.rooms.schemas` before it gets here (a bad field is error 107
with a message per field); the service does the rest. ``HANDLERS`` is merged
into the server's table in ``handlers/__init__.py``.
"""

from __future__ import annotations

from typing import Any

from handlers.rooms import schemas
from handlers.rooms.messages import MessagesService
from handlers.rooms.service import RoomsService
from server.dispatch import Context, Handler


async def create_room(ctx: Context, params: schemas.CreateRoom) -> dict[str, Any]:
    return await RoomsService(ctx.node).create(ctx.user, params)


async def get_room(ctx: Context, params: schemas.RoomRef) -> dict[str, Any]:
    return await RoomsService(ctx.node).get(ctx.user, params)


async def list_rooms(ctx: Context, params: schemas.ListRooms) -> dict[str, Any]:
    return await RoomsService(ctx.node).list_rooms(ctx.user, params)


async def members(ctx: Context, params: schemas.RoomRef) -> dict[str, Any]:
    return await RoomsService(ctx.node).members(ctx.user, params)


async def invite(ctx: Context, params: schemas.Invite) -> dict[str, Any]:
    return await RoomsService(ctx.node).invite(ctx.user, params)


async def join(ctx: Context, params: schemas.RoomRef) -> dict[str, Any]:
    return await RoomsService(ctx.node).join(ctx.user, params)


async def leave(ctx: Context, params: schemas.RoomRef) -> dict[str, Any]:
    return await RoomsService(ctx.node).leave(ctx.user, params)


async def read(ctx: Context, params: schemas.Read) -> dict[str, Any]:
    return await RoomsService(ctx.node).read(ctx.user, params)


async def send(ctx: Context, params: schemas.SendMessage) -> dict[str, Any]:
    return await MessagesService(ctx.node).send(ctx.user, params)


async def get_message(ctx: Context, params: schemas.MessageRef) -> dict[str, Any]:
    return await MessagesService(ctx.node).get(ctx.user, params)


async def edit(ctx: Context, params: schemas.EditMessage) -> dict[str, Any]:
    return await MessagesService(ctx.node).edit(ctx.user, params)


async def delete(ctx: Context, params: schemas.MessageRef) -> dict[str, Any]:
    return await MessagesService(ctx.node).delete(ctx.user, params)


async def list_messages(ctx: Context, params: schemas.ListMessages) -> dict[str, Any]:
    return await MessagesService(ctx.node).list_messages(ctx.user, params)


async def typing(ctx: Context, params: schemas.RoomRef) -> dict[str, Any]:
    return await MessagesService(ctx.node).typing(ctx.user, params)


HANDLERS: dict[str, Handler[Any]] = {
    "rooms.create": Handler(schemas.CreateRoom, create_room),
    "rooms.get": Handler(schemas.RoomRef, get_room),
    "rooms.list": Handler(schemas.ListRooms, list_rooms),
    "rooms.members": Handler(schemas.RoomRef, members),
    "rooms.invite": Handler(schemas.Invite, invite),
    "rooms.join": Handler(schemas.RoomRef, join),
    "rooms.leave": Handler(schemas.RoomRef, leave),
    "messages.send": Handler(schemas.SendMessage, send),
    "messages.get": Handler(schemas.MessageRef, get_message),
    "messages.edit": Handler(schemas.EditMessage, edit),
    "messages.delete": Handler(schemas.MessageRef, delete),
    "messages.list": Handler(schemas.ListMessages, list_messages),
    "typing": Handler(schemas.RoomRef, typing),
    "read": Handler(schemas.Read, read),
}
