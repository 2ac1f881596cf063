"""Messages of a room: send, get, edit, delete, list (cursor pages), and typing.

Rules:

* Only members send, read, and list; only the author edits; the author or a
  room owner or admin deletes. A deleted message stays as a tombstone (id,
  author, time, ``deleted: true``, no body), so pages and read markers keep
  their places; its body is wiped from the row.
* A body is 1 to ``[rooms] max_body`` characters and not only whitespace.
* Pages are keyset pages on the message id: ``before``/``after`` cursors
  stay correct while messages arrive, unlike offsets.
* ``typing`` is published on ``typing:<room>`` and stored nowhere.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from models.transactions import transaction

from handlers.rooms import schemas
from handlers.rooms.access import Actor, ServiceBase, denied, not_found
from handlers.rooms.bodies import DecryptionError
from handlers.rooms.views import message_view, room_channel, typing_channel
from models.rooms import Message
from server.errors import CommandError, ErrorCode

log = logging.getLogger("stagewire.rooms")

_COLUMNS = ("id", "room_id", "author__username", "body", "key_id", "created_at", "edited_at", "deleted_at")


class MessagesService(ServiceBase):
    """Messages; one per call (see :mod:`handlers.rooms.access`)."""

    async def send(self, actor: Actor, params: schemas.SendMessage) -> dict[str, Any]:
        self.check_body(params.body)
        await self.membership(params.room, actor)
        key_id, stored = self.codec.seal(params.body, params.room)
        message = await Message.create(room_id=params.room, author_id=actor.user_id, body=stored, key_id=key_id)
        view = message_view(id=message.id, room=params.room, author=actor.username, body=params.body,
                            created_at=message.created_at, edited_at=None, deleted_at=None)
        await self.push(room_channel(params.room), {"event": "message.created", "message": view}, actor)
        return {"message": view}

    async def get(self, actor: Actor, params: schemas.MessageRef) -> dict[str, Any]:
        await self.membership(params.room, actor)
        rows = await Message.filter(id=params.message, room_id=params.room).values(*_COLUMNS)
        if not rows:
            raise self._no_message(params)
        return {"message": self._view(rows[0])}

    async def edit(self, actor: Actor, params: schemas.EditMessage) -> dict[str, Any]:
        self.check_body(params.body)
        await self.membership(params.room, actor)
        async with transaction():
            message = await self._locked(params)
            if message.author_id != actor.user_id:  # type: ignore[attr-defined]
                raise denied("only the author may edit a message")
            message.key_id, message.body = self.codec.seal(params.body, params.room)
            message.edited_at = datetime.now(timezone.utc)
            await message.save(update_fields=["body", "key_id", "edited_at"])
        view = message_view(id=message.id, room=params.room, author=actor.username, body=params.body,
                            created_at=message.created_at, edited_at=message.edited_at, deleted_at=None)
        await self.push(room_channel(params.room), {"event": "message.edited", "message": view}, actor)
        return {"message": view}

    async def delete(self, actor: Actor, params: schemas.MessageRef) -> dict[str, Any]:
        membership = await self.membership(params.room, actor)
        async with transaction():
            message = await self._locked(params)
            if message.author_id != actor.user_id and not self.role(membership).moderates:  # type: ignore[attr-defined]
                raise denied("only the author or a room admin may delete a message")
            message.body, message.key_id = "", None
            message.deleted_at = datetime.now(timezone.utc)
            await message.save(update_fields=["body", "key_id", "deleted_at"])
        await self.push(room_channel(params.room),
                        {"event": "message.deleted", "room": params.room, "id": message.id}, actor)
        rows = await Message.filter(id=message.id).values(*_COLUMNS)
        return {"message": self._view(rows[0])}

    async def list_messages(self, actor: Actor, params: schemas.ListMessages) -> dict[str, Any]:
        """A page, oldest first; ``next`` continues in the same direction, null at the end."""
        await self.membership(params.room, actor)
        query = Message.filter(room_id=params.room)
        if params.after is not None:
            query = query.filter(id__gt=params.after).order_by("id")
        else:
            if params.before is not None:
                query = query.filter(id__lt=params.before)
            query = query.order_by("-id")
        rows = await query.limit(params.limit + 1).values(*_COLUMNS)
        more, rows = len(rows) > params.limit, rows[: params.limit]
        if params.after is None:
            rows.reverse()
        views = [self._view(row) for row in rows]
        cursor = None
        if more and views:
            cursor = views[-1]["id"] if params.after is not None else views[0]["id"]
        return {"messages": views, "next": cursor}

    async def typing(self, actor: Actor, params: schemas.RoomRef) -> dict[str, Any]:
        await self.membership(params.room, actor)
        await self.push(typing_channel(params.room), {"event": "typing", "room": params.room,
                                                      "user": actor.username}, actor)
        return {}

    async def _locked(self, params: schemas.MessageRef | schemas.EditMessage) -> Message:
        """The live message, locked for update until the transaction ends."""
        message = await Message.filter(id=params.message, room_id=params.room).select_for_update().first()
        if message is None or message.deleted_at is not None:
            raise self._no_message(params)
        return message

    @staticmethod
    def _no_message(params: schemas.MessageRef | schemas.EditMessage) -> CommandError:
        return not_found(f"no message {params.message} in room {params.room}", {"message": "no such message"})

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        body = None
        if row["deleted_at"] is None:
            try:
                body = self.codec.open(row["key_id"], row["body"], row["room_id"])
            except DecryptionError as exc:
                log.error("message %s cannot be decrypted: %s", row["id"], exc)
                raise CommandError(ErrorCode.INTERNAL, "a message cannot be decrypted") from None
        return message_view(id=row["id"], room=row["room_id"], author=row["author__username"], body=body,
                            created_at=row["created_at"], edited_at=row["edited_at"],
                            deleted_at=row["deleted_at"])
