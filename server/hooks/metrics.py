"""What ``/metrics`` shows of the hooks (names prefixed ``stagewire_``).

==========================================  =========  ==============================================
name                                        type       meaning
==========================================  =========  ==============================================
hook_requests_total{target}                 counter    POSTs to a backend: ``connect``, ``refresh``,
                                                       ``subscribe``, ``publish``, ``rpc`` or
                                                       ``webhook:<name>``
hook_failures_total{target,reason}          counter    of those, failed: ``timeout``, ``connection``,
                                                       ``status`` (5xx; non-2xx for a webhook),
                                                       ``invalid`` (an answer of the wrong shape)
hook_latency_seconds{target}                histogram  time to an answer (answered calls only)
webhook_events_emitted_total                counter    events some webhook wanted
webhook_events_dropped_total                counter    event rows lost to a full outbox queue, and
                                                       events that could not be encoded
webhook_outbox_queued                       gauge      event rows waiting for the database
webhook_events_delivered_total{webhook}     counter    events delivered (a 2xx)
webhook_events_dead_total{webhook}          counter    events that became dead letters
==========================================  =========  ==============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.hooks.service import Hooks


class HooksCollector(Collector):
    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    def collect(self) -> Iterator[Metric]:
        hooks = self._hooks
        stats = sorted(hooks.http.stats.items())
        requests = CounterMetricFamily("stagewire_hook_requests", "POSTs to a backend", labels=["target"])
        failures = CounterMetricFamily("stagewire_hook_failures", "POSTs to a backend that failed",
                                       labels=["target", "reason"])
        latency = HistogramMetricFamily("stagewire_hook_latency_seconds", "Time to a backend's answer",
                                        labels=["target"])
        for target, stat in stats:
            requests.add_metric([target], stat.calls)
            for reason, count in sorted(stat.failures.items()):
                failures.add_metric([target, reason], count)
            latency.add_metric([target], stat.latency.cumulative(), stat.latency.sum)
        yield requests
        yield failures
        yield latency
        yield CounterMetricFamily("stagewire_webhook_events_emitted", "Webhook events some webhook wanted",
                                  value=hooks.events.emitted + hooks.pusher.emitted)
        yield CounterMetricFamily("stagewire_webhook_events_dropped", "Event rows lost to a full outbox queue",
                                  value=hooks.outbox.dropped + hooks.events.unencodable)
        yield GaugeMetricFamily("stagewire_webhook_outbox_queued", "Event rows waiting for the database",
                                value=hooks.outbox.queued)
        delivered = CounterMetricFamily("stagewire_webhook_events_delivered", "Webhook events delivered",
                                        labels=["webhook"])
        dead = CounterMetricFamily("stagewire_webhook_events_dead", "Webhook events that became dead letters",
                                   labels=["webhook"])
        for name, sender in sorted(hooks.senders.items()):
            delivered.add_metric([name], sender.delivered)
            dead.add_metric([name], sender.dead)
        yield delivered
        yield dead
