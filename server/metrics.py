"""Prometheus metrics of one node, read from the node's own counters when scraped.

The hot paths never call prometheus_client. The node keeps plain integers
(``node.stats``: commands, messages out, deliveries counted once per
publication, not per subscriber) and one :class:`LatencyHistogram`; a
:class:`NodeCollector` turns them into metric families when ``/metrics`` is
read. Each application gets its own ``CollectorRegistry`` (never the global
default one), so that many apps can live in one process, as in the tests.

Metrics (all prefixed ``stagewire_``):

==================================  =========  ==============================================
name                                type       meaning
==================================  =========  ==============================================
connections                         gauge      WebSocket connections open on this node
connections_accepted_total          counter    WebSocket connections accepted
channels                            gauge      channels with local subscribers
commands_total                      counter    commands received (``connect`` included)
command_errors_total                counter    commands answered with an error
messages_sent_total                 counter    messages queued to clients (replies and pushes)
publications_total                  counter    publications received from the broker
deliveries_total                    counter    publications queued to local subscribers
slow_disconnects_total              counter    clients cut off as slow (close code 4001)
broker_up                           gauge      1 while the broker is reachable
broker_reconnects_total             counter    times the broker connection was re-established
publish_latency_seconds             histogram  ``node.publish``: broker (and database) ack time
==================================  =========  ==============================================
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.node import Node

#: Upper bounds (seconds) of the publish latency buckets; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


_COUNTERS = (
    ("connections_accepted", "connections_accepted", "WebSocket connections accepted"),
    ("commands", "commands", "Commands received (connect included)"),
    ("command_errors", "command_errors", "Commands answered with an error"),
    ("messages_sent", "messages_out", "Messages queued to clients (replies and pushes)"),
    ("publications", "publications", "Publications received from the broker"),
    ("deliveries", "deliveries", "Publications queued to local subscribers"),
    ("slow_disconnects", "slow_disconnects", "Clients disconnected as slow (4001)"),
)


class NodeCollector(Collector):
    """Reads the node's counters on every scrape; nothing when no node runs yet."""

    def __init__(self, get_node: Callable[[], "Node | None"]) -> None:
        self._get_node = get_node

    def collect(self) -> Iterator[Metric]:
        node = self._get_node()
        if node is None:
            return
        stats = node.stats
        yield GaugeMetricFamily("stagewire_connections", "WebSocket connections open", value=len(node.connections))
        yield GaugeMetricFamily("stagewire_channels", "Channels with local subscribers", value=sum(1 for _ in node.hub.channels()))
        for name, key, help_ in _COUNTERS:
            yield CounterMetricFamily(f"stagewire_{name}", help_, value=stats.get(key, 0))
        yield GaugeMetricFamily("stagewire_broker_up", "1 while the broker is reachable",
                                value=1 if node.broker.healthy else 0)
        yield CounterMetricFamily("stagewire_broker_reconnects", "Broker connections re-established",
                                  value=broker_reconnects(node))
        hist = node.publish_latency
        yield HistogramMetricFamily(
            "stagewire_publish_latency_seconds",
            "Time for node.publish to be acknowledged by the broker (and database)",
            buckets=hist.cumulative(),
            sum_value=hist.sum,
        )


def broker_reconnects(node: "Node") -> int:
    """Reconnects the broker reports; backends without a connection (memory) have none."""
    return int(getattr(node.broker, "reconnects", 0))


def create_registry(get_node: Callable[[], "Node | None"]) -> CollectorRegistry:
    """A registry of its own for one application."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(get_node))
    return registry
