"""Who may read a room's channels: its members, checked in the database and cached.

``room:<id>`` and ``typing:<id>`` are ``subscribe = "custom"`` namespaces
whose authorizer is :class:`MembersOnly` (see ``handlers.AUTHORIZERS``). Each
node binds it to a :class:`MembershipCache` of its own: answers are kept for
``[rooms] membership_cache_ttl`` seconds, at most ``membership_cache_size``
of them, least recently used dropped first.

Every membership change (invite, join, leave) is announced to every node by
the service as the control message ``rooms.membership``
(``{"room", "user", "member"}``), and each node's cache forgets that answer.
When a user stops being a member, each node also unsubscribes the user's
connections from the room's channels, so a former member receives nothing
more. The TTL only bounds the damage of a control message lost while the
broker was down.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from handlers.rooms.settings import rooms_section
from handlers.rooms.views import room_id_of
from models.rooms import Membership
from server.channels import Authorizer, Subject
from server.errors import CommandError

if TYPE_CHECKING:
    from server.connection import Connection
    from server.node import Node

log = logging.getLogger("stagewire.rooms")

CONTROL_OP = "rooms.membership"


async def is_member(room_id: int | None, username: str) -> bool:
    """Whether ``username`` is a member of room ``room_id``, from the database."""
    if room_id is None:
        return False
    return await Membership.filter(room_id=room_id, user__username=username).exists()


class MembersOnly:
    """The authorizer of one rooms namespace: only the room's members may read.

    Called unbound it asks the database every time; a node binds it to a cache.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    async def __call__(self, subject: Subject, channel: str) -> bool:
        return await is_member(room_id_of(channel), subject.username)

    def bind(self, node: Node) -> Authorizer:
        return MembershipCache(node, self.namespace).authorize


class MembershipCache:
    """One node's cached membership answers for one namespace."""

    def __init__(self, node: Node, namespace: str) -> None:
        settings = rooms_section(node.settings)
        self.node = node
        self.namespace = namespace
        self.ttl = settings.membership_cache_ttl
        self.size = settings.membership_cache_size
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple[int, str], tuple[float, bool]] = OrderedDict()
        # Bumped by every change: an answer read from the database while a
        # change was announced may be stale, and is not kept.
        self._generation = 0
        node.on_control_message(CONTROL_OP, self.on_change)

    async def authorize(self, subject: Subject, channel: str) -> bool:
        room_id = room_id_of(channel)
        if room_id is None:
            return False
        key = (room_id, subject.username)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        generation = self._generation
        allowed = await is_member(room_id, subject.username)
        if generation == self._generation and self.ttl > 0 and self.size > 0:
            self._entries[key] = (now + self.ttl, allowed)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return allowed

    def on_change(self, message: dict[str, Any]) -> None:
        """A ``rooms.membership`` control message, from any node."""
        room_id, username = message.get("room"), message.get("user")
        if not isinstance(room_id, int) or not isinstance(username, str):
            log.warning("malformed %s control message %r", CONTROL_OP, message)
            return
        self._generation += 1
        self._entries.pop((room_id, username), None)
        if message.get("member") is False:
            self._evict(f"{self.namespace}:{room_id}", username)

    def _evict(self, channel: str, username: str) -> None:
        for conn in list(self.node.hub.subscribers(channel)):
            if conn.identity is not None and conn.identity.username == username:
                self.node.spawn(self._unsubscribe(conn, channel))

    async def _unsubscribe(self, conn: Connection, channel: str) -> None:
        try:
            await self.node.unsubscribe(conn, channel, reason="no longer a member of the room")
        except CommandError:
            pass  # already gone: unsubscribed by the client, or disconnected
        except Exception:
            log.warning("could not unsubscribe %s from %s", conn.id, channel, exc_info=True)
