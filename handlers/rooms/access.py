"""What both rooms services share: who is asking, may they, and how changes go out.

The services (:mod:`handlers.rooms.service`, :mod:`handlers.rooms.messages`)
are the only place rooms logic lives. WebSocket commands and HTTP routes build
one per call from the node (cheap: no state of its own) and pass it the
caller's identity and validated parameters.

Order of every write: validate, check permissions, write in one transaction,
*then* push. A push is never sent for something that was not committed. A
push that fails after the commit (the broker is down) is logged, not
reported: the change is stored, and a client that missed it reloads
(``messages.list`` with ``after``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from handlers.rooms.bodies import codec_for
from handlers.rooms.membership import CONTROL_OP
from handlers.rooms.settings import rooms_section
from handlers.rooms.views import NAMESPACES
from models.rooms import Membership, Room, RoomRole
from server.errors import CommandError, ErrorCode

if TYPE_CHECKING:
    from server.node import Node

log = logging.getLogger("stagewire.rooms")


class Actor(Protocol):
    """Who is asking: a verified identity (``server.auth.identity.Identity``)."""

    @property
    def user_id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def not_found(message: str, fields: dict[str, str] | None = None) -> CommandError:
    return CommandError(ErrorCode.NOT_FOUND, message, fields)


def denied(message: str) -> CommandError:
    return CommandError(ErrorCode.PERMISSION_DENIED, message)


def conflict(message: str) -> CommandError:
    return CommandError(ErrorCode.CONFLICT, message)


def invalid(field: str, message: str) -> CommandError:
    return CommandError(ErrorCode.BAD_REQUEST, f"invalid fields: {field}", {field: message})


class ServiceBase:
    """Permission checks and pushes for the services built on it."""

    def __init__(self, node: Node) -> None:
        missing = [ns for ns in NAMESPACES if ns not in node.settings.namespaces]
        if missing:
            raise CommandError(
                ErrorCode.METHOD_NOT_FOUND,
                "rooms are not enabled on this server: configure "
                + ", ".join(f"[namespaces.{ns}]" for ns in missing),
            )
        self.node = node
        self.settings = rooms_section(node.settings)
        self.codec = codec_for(self.settings)

    async def room(self, room_id: int) -> Room:
        """The room, with its creator (the owner) loaded; 113 if there is none."""
        room = await Room.filter(id=room_id).select_related("created_by").first()
        if room is None:
            raise not_found(f"no room {room_id}", {"room": "no such room"})
        return room

    async def membership(self, room_id: int, actor: Actor) -> Membership:
        """The caller's membership of ``room_id``: 113 for no such room, 103 for not a member."""
        membership = await Membership.get_or_none(room_id=room_id, user_id=actor.user_id)
        if membership is None:
            await self.room(room_id)
            raise denied(f"not a member of room {room_id}")
        return membership

    @staticmethod
    def role(membership: Membership) -> RoomRole:
        try:
            return RoomRole(membership.role)
        except ValueError:
            return RoomRole.MEMBER

    def check_body(self, body: str) -> None:
        if not body.strip():
            raise invalid("body", "must not be empty")
        if len(body) > self.settings.max_body:
            raise invalid("body", f"at most {self.settings.max_body} characters")

    async def push(self, channel: str, data: dict[str, Any], actor: Actor | None) -> None:
        """Publish ``data`` on ``channel``; after a commit, so a failure is only logged."""
        info = {"user": actor.username} if actor is not None else None
        try:
            await self.node.publish(channel, data, info)
        except CommandError as exc:
            log.warning("push of %s to %s failed: %s", data.get("event"), channel, exc.message)

    async def membership_changed(self, room_id: int, username: str, member: bool) -> None:
        """Tell every node (this one too) to forget its cached answer for this member."""
        try:
            await self.node.broadcast_control(CONTROL_OP, {"room": room_id, "user": username, "member": member})
        except CommandError as exc:
            # broadcast_control has acted locally; other nodes' caches expire by TTL.
            log.warning("membership change of %s in room %s not announced: %s", username, room_id, exc.message)
