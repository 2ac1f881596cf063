"""What the cluster knows of Pusher connections, kept in the node's presence store.

Three kinds of entries, all refreshed by their node every ``presence_ttl / 3``
and expiring with it, so a dead node's connections vanish within one TTL:

``<ns>:presence-X`` (the presence channel itself)
    One entry per connection subscribed, as the user of its ``channel_data``
    (or sign-in), with the user's ``user_info`` as the entry's info. The same
    entries as native subscribers of the channel, so both protocols see one
    member list. A user's first entry is a ``member_added`` for everyone, the
    last one a ``member_removed``.
``<ns>:#subscriptions`` (the namespace's occupancy index)
    One entry per Pusher subscription (client ``<socket_id>/<channel>``), whose
    user is the Pusher channel: ``users()`` of the index lists every occupied
    channel with its subscription count, and the store's user-level
    transitions are the channel's occupied and vacated moments, once across
    the cluster.
``<ns>:#connections.<app id>`` (only for apps with ``max_connections``)
    One entry per connection, counted against the quota.

The presence channels of namespaces that the presence tracker already
sweeps (``join_leave``) are swept there; this module sweeps the rest.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping

from server.broker.base import Broker, BrokerUnavailable
from server.config import NamespaceSettings, PusherAppSettings
from server.presence.base import PresenceEntry, PresenceStore
from server.presence.tracker import tracked
from server.pusher import protocol as pp
from server.pusher.connection import Member, PusherConnection
from server.pusher.events import PusherEvent

log = logging.getLogger("stagewire.pusher")

Emit = Callable[[str, PusherEvent], None]
"""(namespace, event): hand an event to the apps of a namespace."""

INDEX = "#subscriptions"


def index_channel(namespace: str) -> str:
    return f"{namespace}:{INDEX}"


def connections_channel(app: PusherAppSettings) -> str:
    return f"{app.namespace}:#connections.{app.id}"


class PusherMembers:
    def __init__(self, store: PresenceStore, broker: Broker, namespaces: Mapping[str, NamespaceSettings],
                 emit: Emit) -> None:
        self.store = store
        self._broker = broker
        self._namespaces = namespaces
        self._emit = emit

    # -- connections -------------------------------------------------------------

    async def admit(self, app: PusherAppSettings, socket_id: str) -> bool:
        """Count a new connection against its app's quota; False when the app is full."""
        if app.max_connections <= 0:
            return True
        channel = connections_channel(app)
        clients, _ = await self.store.stats(channel)
        if clients >= app.max_connections:
            return False
        await self.store.add(PresenceEntry(channel, socket_id, socket_id))
        return True

    async def release(self, app: PusherAppSettings, socket_id: str) -> None:
        if app.max_connections > 0:
            await self.store.remove(PresenceEntry(connections_channel(app), socket_id, socket_id))

    # -- subscriptions -------------------------------------------------------------

    async def subscribed(self, conn: PusherConnection, channel: str) -> None:
        """Record a subscription in the occupancy index (``channel_occupied`` if it is the first)."""
        ns = conn.app.namespace
        if await self.store.add(self._index_entry(conn, channel)):
            self._emit(ns, PusherEvent("channel_occupied", channel))

    async def unsubscribed(self, conn: PusherConnection, channel: str) -> None:
        if await self.store.remove(self._index_entry(conn, channel)):
            self._emit(conn.app.namespace, PusherEvent("channel_vacated", channel))

    async def occupancy(self, namespace: str) -> dict[str, int]:
        """Every occupied Pusher channel of the namespace, with its subscription count."""
        return await self.store.users(index_channel(namespace))

    # -- presence members ------------------------------------------------------------

    async def join(self, conn: PusherConnection, channel: str, member: Member) -> dict[str, str | None]:
        """Add the member; the channel's members (this one included) for subscription_succeeded.

        Raises:
            SubscriptionError: ``LimitReached`` when the channel has
                ``max_presence_members`` users and this one is not among them.
        """
        stagewire = conn.channel(channel)
        users = await self.store.users(stagewire)
        if member.user_id not in users and len(users) >= conn.app.max_presence_members:
            raise pp.SubscriptionError(
                "LimitReached", f"presence channels have at most {conn.app.max_presence_members} members", 4100)
        joined = await self.store.add(PresenceEntry(stagewire, conn.id, member.user_id, member.info))
        conn.members[channel] = member
        if joined:
            await self._announce("join", stagewire, {"user": member.user_id, "user_info": member.info,
                                                     "socket_id": conn.socket_id})
            self._emit(conn.app.namespace, PusherEvent("member_added", channel, user_id=member.user_id))
        return await self.store.members(stagewire)

    async def leave(self, conn: PusherConnection, channel: str) -> None:
        member = conn.members.pop(channel, None)
        if member is None:
            return
        stagewire = conn.channel(channel)
        if await self.store.remove(PresenceEntry(stagewire, conn.id, member.user_id)):
            await self._announce("leave", stagewire, {"user": member.user_id})
            self._emit(conn.app.namespace, PusherEvent("member_removed", channel, user_id=member.user_id))

    def native_transition(self, kind: str, channel: str, user: str) -> None:
        """A join or leave the presence tracker announced (a native member, or a swept entry)."""
        ns, _, name = channel.partition(":")
        if pp.is_presence(name):
            self._emit(ns, PusherEvent("member_added" if kind == "join" else "member_removed", name, user_id=user))

    # -- refresh and sweep -------------------------------------------------------------

    async def sweep(self, conns: Iterable[PusherConnection], held: Iterable[str], apps: Iterable[PusherAppSettings]) -> None:
        """Refresh this node's entries, then expire the dead ones and report who went."""
        entries: list[PresenceEntry] = []
        for conn in conns:
            if conn.app.max_connections > 0:
                entries.append(PresenceEntry(connections_channel(conn.app), conn.id, conn.id))
            for stagewire in conn.subscriptions:
                entries.append(self._index_entry(conn, pp.pusher_name(stagewire)))
            for channel, member in conn.members.items():
                entries.append(PresenceEntry(conn.channel(channel), conn.id, member.user_id))
        if entries:
            await self.store.refresh(entries)
        apps = list(apps)
        namespaces = {app.namespace for app in apps}
        swept = [index_channel(ns) for ns in namespaces]
        swept += [connections_channel(app) for app in apps if app.max_connections > 0]
        swept += [c for c in held if c.partition(":")[0] in namespaces
                  and pp.is_presence(pp.pusher_name(c)) and not tracked(self._namespaces.get(c.partition(":")[0]))]
        for channel, user in await self.store.expire(swept):
            ns, _, name = channel.partition(":")
            if name == INDEX:
                self._emit(ns, PusherEvent("channel_vacated", user))
            elif pp.is_presence(name):
                await self._announce("leave", channel, {"user": user})
                self._emit(ns, PusherEvent("member_removed", name, user_id=user))

    # -- internals ---------------------------------------------------------------------

    def _index_entry(self, conn: PusherConnection, channel: str) -> PresenceEntry:
        return PresenceEntry(index_channel(conn.app.namespace), f"{conn.socket_id}/{channel}", channel)

    async def _announce(self, kind: str, channel: str, info: dict[str, str | None]) -> None:
        try:
            await self._broker.publish_presence(kind, channel, {k: v for k, v in info.items() if v is not None})
        except BrokerUnavailable:
            log.info("%s of %s lost: broker unavailable", kind, channel)
