"""``GET /metrics``: Prometheus metrics of one node, read from its counters when scraped.

The hot paths never call prometheus_client. The node keeps plain integers
(:class:`~server.ops.counters.Counters`) and one
:class:`~server.ops.counters.LatencyHistogram`; a :class:`NodeCollector`
turns them into metric families when ``/metrics`` is read. Each application gets its own ``CollectorRegistry`` (never the global
default one), so that many apps can live in one process, as in the tests.

Metrics (all prefixed ``stagewire_``):

==================================  =========  ==============================================================
name                                type       meaning
==================================  =========  ==============================================================
connections                         gauge      WebSocket connections open on this node
connections_accepted_total          counter    WebSocket connections accepted
channels                            gauge      channels with local subscribers
tasks                               gauge      asyncio tasks of the process
commands_total                      counter    commands received (``connect`` included)
command_errors_total                counter    commands answered with an error
messages_sent_total                 counter    messages queued to clients (replies and pushes)
publications_total                  counter    publications received from the broker
deliveries_total                    counter    publications queued to local subscribers
slow_disconnects_total              counter    clients cut off as slow (close code 4001)
connects_deferred_total             counter    upgrades answered 503 ``try_again`` (``max_handshakes``)
heap_trims_total                    counter    free heap pages handed back to the system (``heap_trim_interval``)
broker_up                           gauge      1 while the broker is reachable
broker_reconnects_total             counter    times the broker connection was re-established
gap_fills_total                     counter    channels filled from their stream after missing publications
gap_filled_publications_total       counter    publications delivered by those fills
stream_resets_total                 counter    channels whose subscribers had to resubscribe (stream lost)
publish_latency_seconds             histogram  ``node.publish``: broker (and database) ack time
==================================  =========  ==============================================================

The registry also carries prometheus_client's process metrics
(``process_resident_memory_bytes``, ``process_open_fds``,
``process_cpu_seconds_total``, ...), read from ``/proc`` on Linux. The hooks
(webhooks and backend proxies) add their own collector to the same registry:
their latency and failures per backend, and the webhook outbox's counts
(``server/hooks/metrics.py`` lists them).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from server.appkeys import METRICS
from server.auth.apikeys import api_key_required

if TYPE_CHECKING:
    from server.node import Node

_COUNTERS = (
    ("connections_accepted", "connections_accepted", "WebSocket connections accepted"),
    ("commands", "commands", "Commands received (connect included)"),
    ("command_errors", "command_errors", "Commands answered with an error"),
    ("messages_sent", "messages_out", "Messages queued to clients (replies and pushes)"),
    ("publications", "publications", "Publications received from the broker"),
    ("deliveries", "deliveries", "Publications queued to local subscribers"),
    ("slow_disconnects", "slow_disconnects", "Clients disconnected as slow (4001)"),
    ("connects_deferred", "connects_deferred", "Upgrades answered 503 try_again (max_handshakes)"),
    ("heap_trims", "heap_trims", "Free heap pages handed back to the system (heap_trim_interval)"),
)


class NodeCollector(Collector):
    """Reads the node's counters on every scrape; nothing when no node runs yet."""

    def __init__(self, get_node: Callable[[], "Node | None"]) -> None:
        self._get_node = get_node

    def collect(self) -> Iterator[Metric]:
        node = self._get_node()
        if node is None:
            return
        counters = node.counters
        yield GaugeMetricFamily("stagewire_connections", "WebSocket connections open", value=len(node.connections))
        yield GaugeMetricFamily("stagewire_channels", "Channels with local subscribers", value=sum(1 for _ in node.hub.channels()))
        yield GaugeMetricFamily("stagewire_tasks", "asyncio tasks of the process (a leak shows here first)",
                                value=len(asyncio.all_tasks()))
        for name, key, help_ in _COUNTERS:
            yield CounterMetricFamily(f"stagewire_{name}", help_, value=getattr(counters, key))
        yield GaugeMetricFamily("stagewire_broker_up", "1 while the broker is reachable",
                                value=1 if node.broker.healthy else 0)
        yield CounterMetricFamily("stagewire_broker_reconnects", "Broker connections re-established",
                                  value=node.broker.reconnects)
        positions = node.positions
        yield CounterMetricFamily("stagewire_gap_fills", "Channels filled from their stream after a gap",
                                  value=positions.fills)
        yield CounterMetricFamily("stagewire_gap_filled_publications", "Publications delivered by gap fills",
                                  value=positions.filled)
        yield CounterMetricFamily("stagewire_stream_resets", "Channels whose subscribers had to resubscribe",
                                  value=positions.resets)
        hist = node.publish_latency
        yield HistogramMetricFamily(
            "stagewire_publish_latency_seconds",
            "Time for node.publish to be acknowledged by the broker (and database)",
            buckets=hist.cumulative(),
            sum_value=hist.sum,
        )


def create_registry(get_node: Callable[[], "Node | None"]) -> CollectorRegistry:
    """A registry of its own for one application, with the process's own figures (RSS, open files, CPU)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(get_node))
    ProcessCollector(registry=registry)
    return registry


# -- the route -------------------------------------------------------------------
#
# Who may read the metrics: requests from a loopback address (a Prometheus or
# an agent on the same host), and any request with a server API key
# (``Authorization: Bearer <key>``, as for the server API). Others get 401.
# Behind a reverse proxy on the same host every request looks local: do not
# route ``/metrics`` through it, or make the proxy refuse it.


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_with_key = api_key_required(_metrics)


async def metrics(request: web.Request) -> web.StreamResponse:
    if is_loopback(request.remote):
        return await _metrics(request)
    return await _with_key(request)


routes = [web.get("/metrics", metrics)]
