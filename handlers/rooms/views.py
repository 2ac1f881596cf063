"""What clients see: channel names, JSON views of rows, and push events.

Channels (namespaces configured in ``config.toml``):

==================  ==============================================================
``room:<id>``       the room's events, for members only (``subscribe = "custom"``)
``typing:<id>``     typing notices, for members only, never stored (``history_size = 0``)
``user:<name>``     a user's personal channel (``subscribe = "owner"``): invitations,
                    unread counts
==================  ==============================================================

Events are the ``data`` of publications on those channels::

    room:<id>    {"event": "message.created", "message": {...}}
                 {"event": "message.edited",  "message": {...}}
                 {"event": "message.deleted", "room": 1, "id": 42}
                 {"event": "member.joined",   "room": 1, "user": "bob", "role": "member"}
                 {"event": "member.invited",  "room": 1, "user": "bob", "role": "member", "by": "alice"}
                 {"event": "member.left",     "room": 1, "user": "bob"}
    typing:<id>  {"event": "typing", "room": 1, "user": "bob"}
    user:<name>  {"event": "room.invited", "room": {...}, "by": "alice"}
                 {"event": "unread", "room": 1, "unread": 0, "last_read": 42}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.rooms import Membership, Room

ROOM_NS, TYPING_NS, USER_NS = "room", "typing", "user"
NAMESPACES = (ROOM_NS, TYPING_NS, USER_NS)


def room_channel(room_id: int) -> str:
    return f"{ROOM_NS}:{room_id}"


def typing_channel(room_id: int) -> str:
    return f"{TYPING_NS}:{room_id}"


def user_channel(username: str) -> str:
    return f"{USER_NS}:{username}"


def room_id_of(channel: str) -> int | None:
    """The room id of a ``room:<id>`` or ``typing:<id>`` channel, or None."""
    ns, _, name = channel.partition(":")
    if ns not in (ROOM_NS, TYPING_NS) or not name.isascii() or not name.isdigit() or len(name) > 19:
        return None
    room_id = int(name)
    return room_id if room_id > 0 else None


def timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def room_view(room: Room, owner: str, role: str | None = None, unread: int | None = None) -> dict[str, Any]:
    """A room; ``role`` and ``unread`` are the caller's, when it is a member."""
    out: dict[str, Any] = {
        "id": room.id,
        "name": room.name,
        "topic": room.topic,
        "public": room.is_public,
        "owner": owner,
        "created_at": timestamp(room.created_at),
        "channel": room_channel(room.id),
        "typing_channel": typing_channel(room.id),
    }
    if role is not None:
        out["role"] = role
    if unread is not None:
        out["unread"] = unread
    return out


def member_view(membership: Membership, username: str) -> dict[str, Any]:
    return {"room": membership.room_id, "user": username, "role": membership.role,  # type: ignore[attr-defined]
            "joined_at": timestamp(membership.joined_at)}


def message_view(
    *, id: int, room: int, author: str, body: str | None, created_at: datetime,
    edited_at: datetime | None, deleted_at: datetime | None,
) -> dict[str, Any]:
    """A message; a deleted one keeps its id, author and time, and has no body."""
    return {
        "id": id,
        "room": room,
        "author": author,
        "body": None if deleted_at is not None else body,
        "created_at": timestamp(created_at),
        "edited_at": timestamp(edited_at),
        "deleted": deleted_at is not None,
    }
