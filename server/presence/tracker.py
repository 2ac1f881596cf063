"""The node's side of presence: record its clients, refresh them, announce joins and leaves.

Only namespaces with ``presence`` or ``join_leave`` are tracked. Joins and
leaves are per *user*: the store says when a user's first client arrived or
last client went, and only then is a ``join``/``leave`` push broadcast (for
``join_leave`` namespaces). Every ``ttl / 3`` seconds the node refreshes its own
clients and sweeps the channels it holds, so a dead node's users leave within
about ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from server.broker.base import Broker, BrokerUnavailable
from server.config import NamespaceSettings
from server.presence.base import PresenceEntry, PresenceStore

if TYPE_CHECKING:
    from server.connection import Connection, Spawn

log = logging.getLogger("stagewire.presence")


def tracked(ns: NamespaceSettings | None) -> bool:
    return ns is not None and (ns.presence or ns.join_leave)


class PresenceTracker:
    def __init__(
        self,
        store: PresenceStore,
        broker: Broker,
        namespaces: Mapping[str, NamespaceSettings],
        ttl: float,
        spawn: Spawn,
    ) -> None:
        self.store = store
        self._broker = broker
        self._namespaces = namespaces
        self._ttl = ttl
        self._spawn = spawn
        # Called with (kind, channel, user) for every join and leave this node
        # announces, exactly once across the cluster (the Pusher shell's
        # webhook events for native members, docs/pusher.md). Must not block.
        self.listeners: list[Callable[[str, str, str], None]] = []
        # Departures waiting for this tick's remove_many (leave_all).
        self._leaving: list[PresenceEntry] = []

    def _ns(self, channel: str) -> NamespaceSettings | None:
        return self._namespaces.get(channel.split(":", 1)[0])

    async def join(self, conn: Connection, channel: str) -> bool:
        """Record the client; True when a ``join`` push is due (call :meth:`announce` later)."""
        ns = self._ns(channel)
        if not tracked(ns) or conn.identity is None:
            return False
        first = await self.store.add(PresenceEntry(channel, conn.id, conn.identity.username))
        return first and ns is not None and ns.join_leave

    def announce(self, kind: str, channel: str, user: str) -> None:
        self._spawn(self._publish(kind, channel, user))

    async def leave(self, conn: Connection, channel: str) -> None:
        """Forget the client; broadcast ``leave`` if it was its user's last one."""
        ns = self._ns(channel)
        if not tracked(ns) or conn.identity is None:
            return
        try:
            last = await self.store.remove(PresenceEntry(channel, conn.id, conn.identity.username))
        except Exception:
            # The entry expires by itself within the TTL.
            log.warning("presence remove failed for %s", channel, exc_info=True)
            return
        if last and ns is not None and ns.join_leave:
            await self._publish("leave", channel, conn.identity.username)

    def leave_all(self, conn: Connection, channels: Iterable[str]) -> None:
        """Forget a client that went away, in the background; ``leave`` for users it was the last of.

        Departures of one loop tick go to the store together (one
        ``remove_many``): a node closing 10,000 connections at once makes a
        few round trips, not one per connection and channel.
        """
        if conn.identity is None:
            return
        user = conn.identity.username
        for channel in channels:
            if tracked(self._ns(channel)):
                if not self._leaving:
                    asyncio.get_running_loop().call_soon(self._start_leaving)
                self._leaving.append(PresenceEntry(channel, conn.id, user))

    def _start_leaving(self) -> None:
        entries, self._leaving = self._leaving, []
        if entries:
            self._spawn(self._leave_many(entries))

    async def _leave_many(self, entries: list[PresenceEntry]) -> None:
        try:
            left = await self.store.remove_many(entries)
        except Exception:
            # The entries expire by themselves within the TTL.
            log.warning("presence remove failed for %d clients", len(entries), exc_info=True)
            return
        for entry, last in zip(entries, left):
            ns = self._ns(entry.channel)
            if last and ns is not None and ns.join_leave:
                await self._publish("leave", entry.channel, entry.user)

    async def run(self, connections: Callable[[], Iterable[Connection]], held: Callable[[], Iterable[str]]) -> None:
        """Refresh this node's clients and sweep expired ones, forever."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self.sweep(connections(), held())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("presence refresh failed", exc_info=True)

    async def sweep(self, connections: Iterable[Connection], held: Iterable[str]) -> None:
        entries = [
            PresenceEntry(channel, conn.id, conn.identity.username)
            for conn in connections
            if conn.identity is not None
            for channel in conn.subscriptions
            if tracked(self._ns(channel))
        ]
        if entries:
            await self.store.refresh(entries)
        for channel, user in await self.store.expire([c for c in held if tracked(self._ns(c))]):
            ns = self._ns(channel)
            if ns is not None and ns.join_leave:
                await self._publish("leave", channel, user)

    async def _publish(self, kind: str, channel: str, user: str) -> None:
        for listener in self.listeners:
            try:
                listener(kind, channel, user)
            except Exception:
                log.exception("presence listener failed")
        try:
            await self._broker.publish_presence(kind, channel, {"user": user})
        except BrokerUnavailable:
            log.info("%s push for %s lost: broker unavailable", kind, channel)
