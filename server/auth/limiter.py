"""Failed-login limiting, per client IP and per username.

In memory and per process: with several workers or nodes each keeps its own
counts, so the effective limit is that many times higher. That is acceptable
for slowing down password guessing, which is all it is for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from server.errors import CommandError, ErrorCode


class TooManyAttempts(CommandError):
    """Too many failed logins; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(ErrorCode.TOO_MANY_REQUESTS, "too many failed logins, retry later")
        self.retry_after = max(1, math.ceil(retry_after))


class LoginLimiter:
    """Caps failed logins per client IP and per username, in a sliding window.

    An attempt counts as a failure from the moment it starts (:meth:`acquire`)
    and is forgiven if it succeeds (:meth:`succeeded`), so that parallel
    guesses cannot all slip past the check before the first one fails.

    State is in memory, per process, and bounded: past ``max_entries`` keys
    the least recently used is forgotten. The IP must be the client's, not a
    reverse proxy's, or everyone behind the proxy shares one budget.

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

    def acquire(self, ip: str | None, username: str) -> None:
        """Count an attempt for ``ip`` and ``username``, or refuse it.

        Raises:
            TooManyAttempts: Either key already has ``max_failures`` failures.
        """
        now = self._clock()
        keys = [f"user:{username}"] + ([f"ip:{ip}"] if ip else [])
        waits = [self._wait(key, now) for key in keys]
        if max(waits) > 0:
            raise TooManyAttempts(max(waits))
        for key in keys:
            self._entry(key).append(now)

    def succeeded(self, ip: str | None, username: str) -> None:
        """Forgive the attempt just made; the username starts afresh."""
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
