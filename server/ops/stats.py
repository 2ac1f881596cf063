"""The live stats feed: every node publishes its numbers to ``ops:stats`` once a second.

Operators watch it on ``/static/dashboard.html``. It travels like any other
publication (``node.publish`` → broker → subscribers), so one dashboard sees
every node of a cluster. The channel's namespace must be declared with
``subscribe = "admin"`` and ``publish = "server"`` (see ``config.toml``), so
that only admins read it and no client can forge it. Without that namespace,
or with ``[server] stats_interval = 0``, nothing is published.

One message::

    {"node": "a1b2c3d4e5f6", "time": 1732000000.5, "uptime": 12.0,
     "connections": 3, "users": 2, "channels": 4,
     "messages_in_per_s": 1.0, "messages_out_per_s": 3.0,
     "deliveries_per_s": 2.0, "publications_per_s": 1.0,
     "slow_disconnects": 0,
     "broker": {"backend": "memory", "healthy": true, "reconnects": 0},
     "recent_errors": [{"time": 1732000000.1, "level": "ERROR",
                        "logger": "stagewire.dispatch", "message": "command x failed"}]}

Rates are per second over the last interval; ``slow_disconnects`` and
``broker.reconnects`` count since the node started.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from server.errors import CommandError

if TYPE_CHECKING:
    from server.node import Node

log = logging.getLogger("stagewire.stats")

#: Most recent warnings and errors sent with every stats message.
RECENT_ERRORS = 10
MAX_ERROR_MESSAGE = 300


class RecentErrors(logging.Handler):
    """Keeps the last few WARNING-or-worse records of the process, for the dashboard."""

    def __init__(self, size: int = RECENT_ERRORS) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the logging call
            message = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            message = f"{message} ({record.exc_info[0].__name__})"
        self.records.append({
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": message[:MAX_ERROR_MESSAGE],
        })


class StatsPublisher:
    """Computes the node's per-second numbers and publishes them to ``channel``.

    Args:
        node: The node whose numbers are published.
        channel: The stats channel (``[server] stats_channel``).
        errors: The handler that keeps the recent warnings and errors.
        clock: A monotonic clock, in seconds, for rates and uptime; tests fake it.
    """

    COUNTERS = ("commands", "messages_out", "deliveries", "publications")

    def __init__(
        self,
        node: Node,
        channel: str,
        errors: RecentErrors,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.channel = channel
        self.errors = errors
        self._clock = clock
        self._started = clock()
        self._last = self._read()

    def _read(self) -> tuple[float, dict[str, int]]:
        counters = self.node.counters
        return self._clock(), {key: getattr(counters, key) for key in self.COUNTERS}

    def snapshot(self) -> dict[str, Any]:
        """The numbers since the previous snapshot (rates) and now (gauges)."""
        node = self.node
        (then, before), (now, after) = self._last, self._read()
        self._last = (now, after)
        elapsed = max(now - then, 1e-6)

        def rate(key: str) -> float:
            return round((after[key] - before[key]) / elapsed, 2)

        return {
            "node": node.id,
            "time": round(time.time(), 3),
            "uptime": round(now - self._started, 1),
            "connections": len(node.connections),
            "users": node.user_count(),
            "channels": sum(1 for _ in node.hub.channels()),
            "messages_in_per_s": rate("commands"),
            "messages_out_per_s": rate("messages_out"),
            "deliveries_per_s": rate("deliveries"),
            "publications_per_s": rate("publications"),
            "slow_disconnects": node.counters.slow_disconnects,
            "broker": {
                "backend": node.settings.broker.backend,
                "healthy": bool(node.broker.healthy),
                "reconnects": node.broker.reconnects,
            },
            "recent_errors": list(self.errors.records),
        }

    async def publish_once(self) -> None:
        try:
            await self.node.publish(self.channel, self.snapshot())
        except CommandError as exc:
            # The broker is down: the dashboard shows this node going stale.
            log.debug("stats not published: %s", exc.message)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.publish_once()
            except Exception:
                log.exception("stats not published")


def stats_channel_usable(settings_channel: str, node: Node) -> bool:
    """Whether the stats channel is set and its namespace is declared."""
    if not settings_channel:
        return False
    try:
        node.namespace(settings_channel)
    except CommandError:
        log.warning("stats feed off: the namespace of %s is not configured", settings_channel)
        return False
    return True
