"""Timeouts of many connections with few loop timers, not one per connection.

A connection's token expires at a wall-clock time. Instead of a timer handle
per connection (hundreds of bytes each, and a heap entry the loop keeps
sorting), :class:`Expiries` groups connections by the second their token
expires in, and arms one timer per second that has any. A connection is
closed in the second after its token expired: at most one second late.

:class:`Deadlines` is the connect timeout: every new connection must send
``connect`` within the same time, so one timer, armed for the oldest of them,
serves them all, to the millisecond.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Callable, Generic, Protocol, TypeVar

T = TypeVar("T")


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


#: Seconds early that :class:`Deadlines` may fire an entry (the loop clock's resolution).
EARLY = 0.001


class Deadline:
    """One entry of :class:`Deadlines`; :meth:`cancel` it once what it waited for came."""

    __slots__ = ("at", "item")

    def __init__(self, at: float, item: Any) -> None:
        self.at, self.item = at, item

    def cancel(self) -> None:
        self.item = None


class Deadlines(Generic[T]):
    """Items that must do something within the same fixed time: one loop timer for all of them.

    Every item gets the same delay, so they expire in the order they came: a
    deque, with one timer armed for its head, instead of a timeout (a timer
    handle and a context manager) per item. A cancelled entry stays until it
    is due, or until it reaches the head when another is added.
    """

    __slots__ = ("_loop", "_delay", "_expired", "_queue", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, expired: Callable[[T], None]) -> None:
        self._loop, self._delay, self._expired = loop, delay, expired
        self._queue: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: T) -> Deadline:
        """Call ``expired(item)`` after the delay, unless the returned entry is cancelled first."""
        entry = Deadline(self._loop.time() + self._delay, item)
        queue = self._queue
        # Entries cancelled at the head go now, not when due: in a storm of handshakes that
        # complete in the order they came, the queue holds about those in flight.
        while queue and queue[0].item is None:
            queue.popleft()
        queue.append(entry)
        if self._timer is None:
            self._timer = self._loop.call_at(entry.at, self._fire)
        return entry

    def __len__(self) -> int:
        return sum(1 for entry in self._queue if entry.item is not None)

    def _fire(self) -> None:
        self._timer = None
        # A loop may run a timer up to its clock's resolution early (uvloop's is a
        # millisecond): what is due within it is due now, so the timer is not re-armed in a spin.
        queue, now = self._queue, self._loop.time() + EARLY
        while queue and queue[0].at <= now:
            item = queue.popleft().item
            if item is not None:
                self._expired(item)
        if queue:
            self._timer = self._loop.call_at(queue[0].at, self._fire)
