"""Rooms and their members: create, get, list, members, invite, join, leave, read.

Rules:

* The creator is the room's ``owner``. Owners and admins may invite admins,
  and are the only ones who may invite into a private room; in a public room
  any member may invite members.
* Anyone may join a public room; a private one is entered by invitation only.
* The owner cannot leave (there would be nobody to run the room).
* ``read`` moves the caller's read marker forward (never back) and pushes the
  new unread count to the caller's personal channel ``user:<name>``, so the
  caller's other tabs and devices update too. Unread counts leave out the
  caller's own messages and deleted ones.
"""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from models.transactions import transaction

from handlers.rooms import schemas
from handlers.rooms.access import Actor, ServiceBase, conflict, denied, not_found
from handlers.rooms.views import member_view, room_channel, room_view, user_channel
from models.rooms import Membership, Message, ReadMarker, Room, RoomRole
from models.user import User


class RoomsService(ServiceBase):
    """Rooms and memberships; one per call (see :mod:`handlers.rooms.access`)."""

    async def create(self, actor: Actor, params: schemas.CreateRoom) -> dict[str, Any]:
        async with transaction():
            room = await Room.create(
                name=params.name, topic=params.topic, is_public=params.public, created_by_id=actor.user_id
            )
            await Membership.create(room_id=room.id, user_id=actor.user_id, role=RoomRole.OWNER.value)
        await self.membership_changed(room.id, actor.username, True)
        return {"room": room_view(room, actor.username, RoomRole.OWNER.value, 0)}

    async def get(self, actor: Actor, params: schemas.RoomRef) -> dict[str, Any]:
        room = await self.room(params.room)
        membership = await Membership.get_or_none(room_id=room.id, user_id=actor.user_id)
        if membership is None:
            if not room.is_public:
                raise denied(f"not a member of room {room.id}")
            return {"room": room_view(room, room.created_by.username)}
        unread = await self.unread(room.id, actor)
        return {"room": room_view(room, room.created_by.username, membership.role, unread)}

    async def list_rooms(self, actor: Actor, params: schemas.ListRooms) -> dict[str, Any]:
        """One page of rooms, newest first; ``next`` is the ``before`` of the next page."""
        if params.scope == "public":
            query = Room.filter(is_public=True)
            if params.before is not None:
                query = query.filter(id__lt=params.before)
            rooms = await query.order_by("-id").limit(params.limit + 1).select_related("created_by")
            more, rooms = len(rooms) > params.limit, rooms[: params.limit]
            roles = dict(await Membership.filter(
                user_id=actor.user_id, room_id__in=[r.id for r in rooms]
            ).values_list("room_id", "role"))
            views = [room_view(r, r.created_by.username, roles.get(r.id)) for r in rooms]
        else:
            mine = Membership.filter(user_id=actor.user_id)
            if params.before is not None:
                mine = mine.filter(room_id__lt=params.before)
            memberships = await mine.order_by("-room_id").limit(params.limit + 1).select_related(
                "room__created_by"
            )
            more, memberships = len(memberships) > params.limit, memberships[: params.limit]
            rooms = [m.room for m in memberships]
            unread = await self.unread_of(rooms, actor)
            views = [room_view(m.room, m.room.created_by.username, m.role, unread[m.room.id]) for m in memberships]
        return {"rooms": views, "next": rooms[-1].id if more else None}

    async def members(self, actor: Actor, params: schemas.RoomRef) -> dict[str, Any]:
        await self.membership(params.room, actor)
        rows = await Membership.filter(room_id=params.room).order_by("id").select_related("user")
        return {"members": [member_view(m, m.user.username) for m in rows]}

    async def invite(self, actor: Actor, params: schemas.Invite) -> dict[str, Any]:
        mine = await self.membership(params.room, actor)
        room = await self.room(params.room)
        moderator = self.role(mine).moderates
        if params.role == RoomRole.ADMIN.value and not moderator:
            raise denied("only the owner and admins may invite admins")
        if not room.is_public and not moderator:
            raise denied("only the owner and admins may invite into a private room")
        invitee = await User.get_or_none(username=params.user.lower())
        if invitee is None:
            raise not_found(f"no user {params.user!r}", {"user": "no such user"})
        try:
            async with transaction():
                membership = await Membership.create(
                    room_id=room.id, user_id=invitee.id, role=params.role, invited_by_id=actor.user_id
                )
        except IntegrityError:
            raise conflict(f"{invitee.username} is already a member") from None
        await self.membership_changed(room.id, invitee.username, True)
        event = {"event": "member.invited", "room": room.id, "user": invitee.username,
                 "role": params.role, "by": actor.username}
        await self.push(room_channel(room.id), event, actor)
        invitation = {"event": "room.invited", "room": room_view(room, room.created_by.username, params.role),
                      "by": actor.username}
        await self.push(user_channel(invitee.username), invitation, actor)
        return {"member": member_view(membership, invitee.username)}

    async def join(self, actor: Actor, params: schemas.RoomRef) -> dict[str, Any]:
        room = await self.room(params.room)
        if not room.is_public:
            raise denied(f"room {room.id} is private: ask a member for an invitation")
        try:
            async with transaction():
                membership = await Membership.create(room_id=room.id, user_id=actor.user_id)
        except IntegrityError:
            raise conflict(f"already a member of room {room.id}") from None
        await self.membership_changed(room.id, actor.username, True)
        event = {"event": "member.joined", "room": room.id, "user": actor.username, "role": membership.role}
        await self.push(room_channel(room.id), event, actor)
        return {"member": member_view(membership, actor.username)}

    async def leave(self, actor: Actor, params: schemas.RoomRef) -> dict[str, Any]:
        membership = await self.membership(params.room, actor)
        if self.role(membership) is RoomRole.OWNER:
            raise conflict("the owner cannot leave the room")
        async with transaction():
            await ReadMarker.filter(room_id=params.room, user_id=actor.user_id).delete()
            deleted = await Membership.filter(id=membership.id).delete()
        if not deleted:
            raise denied(f"not a member of room {params.room}")  # left meanwhile, elsewhere
        # The event first, while the leaver is still subscribed and sees it too.
        await self.push(room_channel(params.room), {"event": "member.left", "room": params.room,
                                                    "user": actor.username}, actor)
        await self.membership_changed(params.room, actor.username, False)
        return {}

    async def read(self, actor: Actor, params: schemas.Read) -> dict[str, Any]:
        await self.membership(params.room, actor)
        if not await Message.filter(id=params.message, room_id=params.room).exists():
            raise not_found(f"no message {params.message} in room {params.room}", {"message": "no such message"})
        last_read = await self._move_marker(params.room, actor.user_id, params.message)
        unread = await self.unread(params.room, actor, last_read)
        result = {"room": params.room, "unread": unread, "last_read": last_read}
        await self.push(user_channel(actor.username), {"event": "unread", **result}, actor)
        return result

    async def _move_marker(self, room_id: int, user_id: int, message_id: int) -> int:
        """Move the marker up to ``message_id`` (never back); the marker's new position."""
        for _ in range(2):
            async with transaction():
                marker = await ReadMarker.filter(room_id=room_id, user_id=user_id).select_for_update().first()
                if marker is not None:
                    if message_id > marker.message_id:
                        marker.message_id = message_id
                        await marker.save(update_fields=["message_id", "updated_at"])
                    return int(marker.message_id)
            try:
                async with transaction():
                    await ReadMarker.create(room_id=room_id, user_id=user_id, message_id=message_id)
                return message_id
            except IntegrityError:
                continue  # created by a concurrent read: move that one
        raise conflict("the read marker is being moved concurrently: retry")

    async def unread_of(self, rooms: list[Room], actor: Actor) -> dict[int, int]:
        """Unread counts of a page of rooms in two queries (markers, then one grouped count), not two per room."""
        ids = [room.id for room in rooms]
        if not ids:
            return {}
        markers = dict(await ReadMarker.filter(room_id__in=ids, user_id=actor.user_id).values_list("room_id", "message_id"))
        after_marker = Q(*(Q(room_id=room_id, id__gt=markers.get(room_id, 0)) for room_id in ids), join_type=Q.OR)
        counts = await (
            Message.filter(after_marker, deleted_at__isnull=True).exclude(author_id=actor.user_id)
            .annotate(unread=Count("id")).group_by("room_id").values_list("room_id", "unread")
        )
        found = {int(room_id): int(unread) for room_id, unread in counts}
        return {room_id: found.get(room_id, 0) for room_id in ids}

    async def unread(self, room_id: int, actor: Actor, last_read: int | None = None) -> int:
        """Messages of others after the caller's read marker, deleted ones left out."""
        if last_read is None:
            marker = await ReadMarker.get_or_none(room_id=room_id, user_id=actor.user_id)
            last_read = marker.message_id if marker is not None else 0
        return await Message.filter(
            room_id=room_id, id__gt=last_read, deleted_at__isnull=True
        ).exclude(author_id=actor.user_id).count()
