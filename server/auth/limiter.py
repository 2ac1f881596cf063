"""Failed-login limiting, per client IP and per username.

``LoginLimiter`` is the contract; two backends implement it:

* :class:`MemoryLoginLimiter`: in memory, per process. With several workers
  or nodes each keeps its own counts, so the effective limit is that many
  times higher. It is the limiter of the memory broker (one process).
* :class:`~server.auth.limiter_redis.RedisLoginLimiter`: the counts live in
  the node's Redis (the broker's), so every worker and node of a deployment
  enforces one limit. ``create_app`` uses it whenever the broker is Redis.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from server.errors import CommandError, ErrorCode


class TooManyAttempts(CommandError):
    """Too many failed logins; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(ErrorCode.TOO_MANY_REQUESTS, "too many failed logins, retry later")
        self.retry_after = max(1, math.ceil(retry_after))


class LoginLimiter(Protocol):
    """Caps failed logins per client IP and per username, in a sliding window.

    An attempt counts as a failure from the moment it starts (:meth:`acquire`)
    and is forgiven if it succeeds (:meth:`succeeded`), so that parallel
    guesses cannot all slip past the check before the first one fails. The IP
    must be the client's, not a reverse proxy's, or everyone behind the proxy
    shares one budget.
    """

    max_failures: int
    window: float

    async def acquire(self, ip: str | None, username: str) -> None:
        """Count an attempt for ``ip`` and ``username``, or refuse it.

        Raises:
            TooManyAttempts: Either key already has ``max_failures`` failures
                within ``window`` seconds.
            BrokerUnavailable: The shared store cannot answer (Redis only);
                the attempt is refused rather than let through unchecked.
        """
        ...

    async def succeeded(self, ip: str | None, username: str) -> None:
        """Forgive the attempt just made; the username starts afresh."""
        ...


def limiter_keys(ip: str | None, username: str) -> list[str]:
    """The keys an attempt counts against: its username, and its IP when known."""
    return [f"user:{username}"] + ([f"ip:{ip}"] if ip else [])


class MemoryLoginLimiter:
    """A :class:`LoginLimiter` in memory, per process, and bounded.

    Past ``max_entries`` keys the least recently used is forgotten.

    Args:
        max_failures: Failures allowed within ``window``; the next is refused.
        window: Seconds a failure is remembered.
        max_entries: Keys (IPs plus usernames) kept at most.
        clock: A monotonic clock, in seconds.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    async def acquire(self, ip: str | None, username: str) -> None:
        now = self._clock()
        keys = limiter_keys(ip, username)
        waits = [self._wait(key, now) for key in keys]
        if max(waits) > 0:
            raise TooManyAttempts(max(waits))
        for key in keys:
            self._entry(key).append(now)

    async def succeeded(self, ip: str | None, username: str) -> None:
        self._failures.pop(f"user:{username}", None)
        if ip and (times := self._failures.get(f"ip:{ip}")):
            times.pop()

    def __len__(self) -> int:
        return len(self._failures)

    def _wait(self, key: str, now: float) -> float:
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self.max_failures:
            return 0.0
        return times[-self.max_failures] + self.window - now

    def _entry(self, key: str) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            # Only the newest max_failures times matter for the decision.
            times = self._failures[key] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        return times

