"""Token expiry of many connections with one loop timer per second, not one per connection.

A connection's token expires at a wall-clock time. Instead of a timer handle
per connection (hundreds of bytes each, and a heap entry the loop keeps
sorting), :class:`Expiries` groups connections by the second their token
expires in, and arms one timer per second that has any. A connection is
closed in the second after its token expired: at most one second late.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Expiring(Protocol):
    """What :class:`Expiries` calls when a connection's token has expired."""

    def expired(self) -> None: ...


class Expiries:
    """Connections grouped by the second their token expires in."""

    __slots__ = ("_loop", "_buckets")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # second → (its timer, the connections expiring in it)
        self._buckets: dict[int, tuple[asyncio.TimerHandle, dict[Expiring, None]]] = {}

    def add(self, conn: Expiring, expires_at: float) -> int:
        """Call ``conn.expired()`` once ``expires_at`` (``time.time()``) has passed; returns the key for :meth:`remove`."""
        second = math.ceil(expires_at)
        bucket = self._buckets.get(second)
        if bucket is None:
            delay = max(0.0, second - time.time())
            bucket = self._buckets[second] = (self._loop.call_later(delay, self._fire, second), {})
        bucket[1][conn] = None
        return second

    def remove(self, conn: Expiring, second: int) -> None:
        """Forget ``conn`` (added with the key ``second``); a second left empty drops its timer."""
        bucket = self._buckets.get(second)
        if bucket is None:
            return
        members = bucket[1]
        members.pop(conn, None)
        if not members:
            bucket[0].cancel()
            del self._buckets[second]

    def __len__(self) -> int:
        return sum(len(members) for _, members in self._buckets.values())

    def _fire(self, second: int) -> None:
        _, members = self._buckets.pop(second, (None, {}))
        for conn in list(members):
            conn.expired()
