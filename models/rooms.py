"""Rooms, the reference application: rooms, their members, messages and read markers.

The queries the service runs, and the index that serves each:

==================================================  =====================================
query                                               index
==================================================  =====================================
is this user a member of this room (every command)  ``memberships (room, user)``, unique
the rooms of a user, by room id (``rooms.list``)    ``memberships (user, room)``
public rooms, newest first                          ``rooms (is_public, id)``
a page of a room's messages, by id (cursor)         ``messages (room, id)``
unread: a room's messages after the read marker     ``messages (room, id)``
this user's marker in this room                     ``read_markers (room, user)``, unique
==================================================  =====================================

A message body is stored as written, or, with ``[rooms] encrypt_at_rest``,
as AES-GCM ciphertext (base64) with the id of its key in ``key_id``; a row
with no ``key_id`` is plaintext. See :mod:`handlers.rooms.bodies`.

Schema changes need a migration: ``tortoise -c models.db.TORTOISE_ORM
makemigrations`` (see :mod:`models.db`).
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.user import User


class RoomRole(StrEnum):
    """What a member may do: owners and admins invite admins and delete any message."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def moderates(self) -> bool:
        return self in (RoomRole.OWNER, RoomRole.ADMIN)


class Room(Model):
    """A chat room. Anyone may join a public one; a private one is entered by invitation."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=64)
    topic = fields.CharField(max_length=200, default="")
    is_public = fields.BooleanField(default=False)
    created_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    memberships: fields.ReverseRelation[Membership]

    class Meta:
        table = "rooms"
        table_description = "Rooms of the rooms application"
        indexes = (("is_public", "id"),)


class Membership(Model):
    """A user's place in a room, with a role (a plain string column, see ``models.user``)."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[Room] = fields.ForeignKeyField(
        "stagewire.Room", related_name="memberships", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    role = fields.CharField(max_length=16, default=RoomRole.MEMBER.value)
    invited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name=False, on_delete=fields.SET_NULL, null=True, db_index=False
    )
    joined_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "room_memberships"
        table_description = "Members of rooms and their roles"
        # Also the index of "is this user a member" (room first).
        unique_together = (("room", "user"),)
        # A user's rooms, newest first (rooms.list pages by room id).
        indexes = (("user_id", "room_id"),)


class Message(Model):
    """One message. Deleting keeps the row (its id, author and time) and wipes the body."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[Room] = fields.ForeignKeyField(
        "stagewire.Room", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    # Plaintext, or base64 AES-GCM ciphertext when key_id is set.
    body = fields.TextField()
    key_id = fields.CharField(max_length=16, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    edited_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "room_messages"
        table_description = "Messages of rooms"
        indexes = (("room_id", "id"),)


class ReadMarker(Model):
    """The newest message a member has read in a room; unread counts start after it."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[Room] = fields.ForeignKeyField(
        "stagewire.Room", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name=False, on_delete=fields.CASCADE, db_index=False
    )
    message_id = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "room_read_markers"
        table_description = "Read markers of room members"
        unique_together = (("room", "user"),)
