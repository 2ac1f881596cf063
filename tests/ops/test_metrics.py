"""``/metrics``: Prometheus text from the node's counters, per-app registries, who may read it."""

from __future__ import annotations

from unittest import mock

from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from server.api.errors import error_middleware
from server.ops import metrics as metrics_api
from server.ops.counters import LatencyHistogram
from tests.conftest import API_KEY


async def scrape(stagewire) -> dict[str, float]:
    """Every sample of ``/metrics`` by name (with ``le`` for histogram buckets)."""
    async with stagewire.http.get(f"{stagewire.url}/metrics") as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + (f'{{le="{s.labels["le"]}"}}' if "le" in s.labels else "")
            samples[key] = s.value
    return samples


async def test_metrics_follow_connections_commands_and_deliveries(stagewire):
    before = await scrape(stagewire)
    assert before["stagewire_connections"] == 0
    assert before["stagewire_broker_up"] == 1
    alice = await stagewire.client("alice")
    bob = await stagewire.client("bob")
    await bob.result("subscribe", channel="quiet:room")
    await alice.result("subscribe", channel="quiet:room")
    for i in range(3):
        await alice.result("publish", channel="quiet:room", data={"n": i})
    for _ in range(3):
        await bob.recv_push("pub", channel="quiet:room")
    await alice.assert_error(104, "no.such.command")

    after = await scrape(stagewire)
    assert after["stagewire_connections"] == 2
    assert after["stagewire_connections_accepted_total"] == 2
    assert after["stagewire_channels"] == 1
    # connect x2, subscribe x2, publish x3, the unknown command
    assert after["stagewire_commands_total"] == before["stagewire_commands_total"] + 8
    assert after["stagewire_command_errors_total"] == before["stagewire_command_errors_total"] + 1
    # three publications, each queued to two local subscribers
    assert after["stagewire_publications_total"] - before["stagewire_publications_total"] == 3
    assert after["stagewire_deliveries_total"] - before["stagewire_deliveries_total"] == 6
    assert after["stagewire_messages_sent_total"] >= before["stagewire_messages_sent_total"] + 8 + 6
    assert after["stagewire_publish_latency_seconds_count"] >= 3
    assert after['stagewire_publish_latency_seconds_bucket{le="+Inf"}'] == after["stagewire_publish_latency_seconds_count"]
    assert after["stagewire_slow_disconnects_total"] == 0
    assert after["stagewire_broker_reconnects_total"] == 0

    await alice.close()
    await bob.close()
    for _ in range(100):
        if (await scrape(stagewire))["stagewire_connections"] == 0:
            break
    assert (await scrape(stagewire))["stagewire_connections"] == 0


async def test_each_app_has_its_own_registry(make_stagewire, settings, tmp_path):
    one = await make_stagewire(settings)
    other = await make_stagewire(settings.replace(database={"url": f"sqlite://{tmp_path}/other.sqlite3"}))
    await one.client("alice")
    assert (await scrape(one))["stagewire_connections"] == 1
    assert (await scrape(other))["stagewire_connections"] == 0


def _request_from(app, remote: str, headers: dict[str, str] | None = None):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (remote, 50000) if name == "peername" else default
    return make_mocked_request("GET", "/metrics", headers=headers or {}, app=app, transport=transport)


async def test_remote_scrapers_need_an_api_key(stagewire):
    app = stagewire.app

    async def scrape_from(remote: str, headers: dict[str, str] | None = None):
        # Through the app's error middleware, as a request would go.
        return await error_middleware(_request_from(app, remote, headers), metrics_api.metrics)

    refused = await scrape_from("203.0.113.7")
    assert refused.status == 401
    wrong = await scrape_from("203.0.113.7", {"Authorization": "Bearer nope"})
    assert wrong.status == 401
    allowed = await scrape_from("203.0.113.7", {"Authorization": f"Bearer {API_KEY}"})
    assert allowed.status == 200 and b"stagewire_connections" in allowed.body
    local = await scrape_from("::1")
    assert local.status == 200


def test_is_loopback():
    assert metrics_api.is_loopback("127.0.0.1") and metrics_api.is_loopback("::1")
    assert not metrics_api.is_loopback("10.1.2.3") and not metrics_api.is_loopback(None)
    assert not metrics_api.is_loopback("not-an-ip")


def test_latency_histogram_buckets_are_cumulative():
    hist = LatencyHistogram((0.01, 0.1))
    for seconds in (0.001, 0.01, 0.05, 2.0):
        hist.observe(seconds)
    assert hist.cumulative() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
    assert hist.count == 4 and abs(hist.sum - 2.061) < 1e-9
