"""The node's plain counters: integers the hot paths add to, read when scraped.

A leaf module: the connection, the dispatcher and the node count here, and
``server.ops.metrics`` and ``server.ops.stats`` read it, so none of them needs
the others. Nothing on a hot path calls prometheus_client.
"""

from __future__ import annotations

import bisect

#: Upper bounds (seconds) of the publish latency buckets; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Counters:
    """Counts since the node started. Deliveries are added once per publication, not per subscriber."""

    __slots__ = (
        "connections_accepted", "commands", "command_errors", "messages_out",
        "publications", "deliveries", "slow_disconnects", "connects_deferred", "heap_trims",
    )

    def __init__(self) -> None:
        self.connections_accepted = 0
        self.commands = 0  # connect included
        self.command_errors = 0
        self.messages_out = 0  # replies and pushes queued to clients
        self.publications = 0  # received from the broker
        self.deliveries = 0  # publications queued to local subscribers
        self.slow_disconnects = 0  # clients cut off with 4001
        self.connects_deferred = 0  # upgrades answered 503 try_again ([server] max_handshakes)
        self.heap_trims = 0  # free heap pages handed back after connections came and went (ops/heap.py)

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        return {name: getattr(self, name) for name in self.__slots__}


class LatencyHistogram:
    """A fixed-bucket histogram: one bisect and two additions per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations at or below it)`` pairs, Prometheus style."""
        out, total = [], 0
        for bound, n in zip((*(repr(float(b)) for b in self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out
