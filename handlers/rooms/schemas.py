"""The parameters of every rooms operation, one pydantic model each.

The same model validates a WebSocket command (``{"type": "messages.send",
"room": 1, "body": "hi"}``) and the matching HTTP request (path parameters
merged into the JSON body), and :mod:`server.api.openapi` turns it into the
OpenAPI schema: one definition, three uses.

Limits that come from settings (``[rooms] max_body``) are checked by the
service, which knows them; these models check the shape.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from pydantic import AfterValidator, Field

from server.auth.sessions import check_username
from server.dispatch import Params

MAX_ID = 2**63 - 1
RoomId = Annotated[int, Field(ge=1, le=MAX_ID, description="a room's id")]
MessageId = Annotated[int, Field(ge=1, le=MAX_ID, description="a message's id")]
# Checked by the service (it must hold a non-space character, within [rooms] max_body); the pattern documents it.
Body = Annotated[str, Field(json_schema_extra={"pattern": "\\S"})]


def _stripped_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


RoomName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_stripped_name)]
Username = Annotated[str, Field(min_length=3, max_length=32, json_schema_extra={"pattern": "^[A-Za-z0-9_.-]+$"}),
                     AfterValidator(check_username)]
PageSize = Annotated[int, Field(ge=1, le=100, description="at most this many items")]


class CreateRoom(Params):
    """``rooms.create``: the caller becomes the room's owner."""

    name: RoomName
    topic: str = Field(default="", max_length=200)
    public: bool = Field(default=False, description="anyone may join a public room")


class RoomRef(Params):
    """``rooms.get``, ``rooms.join``, ``rooms.leave``, ``rooms.members``, ``typing``."""

    room: RoomId


class ListRooms(Params):
    """``rooms.list``: the caller's rooms (with unread counts), or the public ones."""

    scope: Literal["joined", "public"] = "joined"
    before: RoomId | None = Field(default=None, description="cursor: the next page starts below this room id")
    limit: PageSize = 100


class Invite(Params):
    """``rooms.invite``: make ``user`` a member. Only owners and admins invite admins."""

    room: RoomId
    user: Username
    role: Literal["member", "admin"] = "member"


class SendMessage(Params):
    """``messages.send``."""

    room: RoomId
    body: Body


class MessageRef(Params):
    """``messages.get`` and ``messages.delete``."""

    room: RoomId
    message: MessageId


class EditMessage(Params):
    """``messages.edit``: only the author edits."""

    room: RoomId
    message: MessageId
    body: Body


class ListMessages(Params):
    """``messages.list``: one page, oldest first within the page.

    Without a cursor, the newest ``limit`` messages; with ``before``, older
    ones; with ``after``, newer ones. ``next`` in the result is the cursor of
    the following page in the same direction, or null at the end.
    """

    room: RoomId
    before: MessageId | None = None
    after: MessageId | None = None
    limit: PageSize = 50

    @pydantic.model_validator(mode="after")
    def _one_direction(self) -> ListMessages:
        if self.before is not None and self.after is not None:
            raise ValueError("give before or after, not both")
        return self


class Read(Params):
    """``read``: everything up to ``message`` has been read (the marker never moves back)."""

    room: RoomId
    message: MessageId
