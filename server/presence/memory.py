"""``MemoryPresence``: presence for a single process (the embedded default)."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from server.presence.base import PresenceEntry


class MemoryPresence:
    """A :class:`~server.presence.base.PresenceStore` held in this process."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        # channel → client → (user, expires_at)
        self._clients: dict[str, dict[str, tuple[str, float]]] = {}
        # channel → user → live client count
        self._users: dict[str, dict[str, int]] = {}
        # channel → user → info (JSON text), while the user is present
        self._info: dict[str, dict[str, str]] = {}

    async def add(self, entry: PresenceEntry) -> bool:
        clients = self._clients.setdefault(entry.channel, {})
        known = entry.client in clients
        clients[entry.client] = (entry.user, self._clock() + self._ttl)
        if entry.info is not None:
            self._info.setdefault(entry.channel, {})[entry.user] = entry.info
        if known:
            return False
        users = self._users.setdefault(entry.channel, {})
        users[entry.user] = users.get(entry.user, 0) + 1
        return users[entry.user] == 1

    async def remove(self, entry: PresenceEntry) -> bool:
        clients = self._clients.get(entry.channel)
        if clients is None or clients.pop(entry.client, None) is None:
            return False
        if not clients:
            del self._clients[entry.channel]
        return self._decrement(entry.channel, entry.user)

    async def remove_many(self, entries: Sequence[PresenceEntry]) -> list[bool]:
        return [await self.remove(entry) for entry in entries]

    async def refresh(self, entries: Iterable[PresenceEntry]) -> None:
        expires_at = self._clock() + self._ttl
        for entry in entries:
            clients = self._clients.get(entry.channel)
            if clients is not None and entry.client in clients:
                clients[entry.client] = (entry.user, expires_at)

    async def expire(self, channels: Iterable[str]) -> list[tuple[str, str]]:
        now = self._clock()
        gone = []
        for channel in channels:
            clients = self._clients.get(channel, {})
            for client, (user, expires_at) in list(clients.items()):
                if expires_at <= now:
                    del clients[client]
                    if self._decrement(channel, user):
                        gone.append((channel, user))
            if not clients:
                self._clients.pop(channel, None)
        return gone

    async def users(self, channel: str) -> dict[str, int]:
        await self.expire([channel])
        return dict(self._users.get(channel, {}))

    async def stats(self, channel: str) -> tuple[int, int]:
        await self.expire([channel])
        return len(self._clients.get(channel, {})), len(self._users.get(channel, {}))

    async def members(self, channel: str) -> dict[str, str | None]:
        await self.expire([channel])
        info = self._info.get(channel, {})
        return {user: info.get(user) for user in self._users.get(channel, {})}

    async def close(self) -> None:
        self._clients.clear()
        self._users.clear()
        self._info.clear()

    def _decrement(self, channel: str, user: str) -> bool:
        users = self._users.get(channel, {})
        count = users.get(user, 0) - 1
        if count > 0:
            users[user] = count
            return False
        users.pop(user, None)
        if not users:
            self._users.pop(channel, None)
        info = self._info.get(channel)
        if info is not None:
            info.pop(user, None)
            if not info:
                del self._info[channel]
        return True
