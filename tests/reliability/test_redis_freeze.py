"""Redis frozen with SIGSTOP while subscribers are live: every wait is bounded.

A frozen Redis keeps its connections open and answers nothing, as over a dead
network. The bounds (docs/reliability.md, "Redis stops answering"):

* a command (publish, history, presence) fails with 112 within ``socket_timeout``;
* the pub/sub connection is declared dead within ``2 × ping_interval``, and the
  node reports itself not ready;
* once Redis answers again, the pub/sub is back within the reconnect backoff
  cap, and the node fills each channel's gap from its stream: no subscriber is
  closed, and each gets every publication once, the ones whose publish timed
  out included (a 112 after a timeout means "maybe published").
"""

from __future__ import annotations

import asyncio
import time

import pytest

from server.appkeys import NODE
from server.errors import CloseCode
from tests.conftest import NAMESPACES, make_settings
from tests.private_redis import PrivateRedis, private_redis  # noqa: F401

pytestmark = pytest.mark.redis

SOCKET_TIMEOUT = 0.5
PING_INTERVAL = 0.5
MAX_DELAY = 0.2
# Scheduling slack on a loaded machine; the bounds themselves are the settings.
SLACK = 1.5


def frozen_settings(tmp_path, redis: PrivateRedis):
    return make_settings(
        tmp_path,
        broker={"backend": "redis", "redis_url": redis.url, "prefix": "freeze", "socket_timeout": SOCKET_TIMEOUT,
                "reconnect_min_delay": 0.05, "reconnect_max_delay": MAX_DELAY, "ping_interval": PING_INTERVAL},
        namespaces={**NAMESPACES, "log": {"subscribe": "authenticated", "publish": "client", "persist": True}},
    )


async def until(condition, timeout: float) -> float:
    """Seconds until ``condition()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_frozen_redis_fails_publishes_in_time_and_subscribers_recover_after_it_thaws(
    make_stagewire, tmp_path, private_redis
):
    sw = await make_stagewire(frozen_settings(tmp_path, private_redis))
    node = sw.app[NODE]
    alice, bob = await sw.client("alice"), await sw.client("bob")
    position = await bob.result("subscribe", channel="quiet:f")
    durable = await bob.result("subscribe", channel="log:f")
    await alice.result("publish", channel="quiet:f", data="before")
    assert (await bob.recv_push("pub", channel="quiet:f"))["data"] == "before"

    private_redis.freeze()
    started = time.monotonic()
    error = await alice.assert_error(112, "publish", channel="quiet:f", data="during", idempotency_key="k1")
    assert error["temporary"] is True
    assert time.monotonic() - started < SOCKET_TIMEOUT + SLACK, "a publish hung past socket_timeout"
    stored = await alice.result("publish", channel="log:f", data="stored")
    assert stored["delayed"] is True, "a durable publication is acknowledged from the database"

    await until(lambda: not node.broker.healthy, 2 * PING_INTERVAL + SLACK)
    async with sw.http.get(f"{sw.url}/readyz") as r:
        assert r.status == 503, "a node without its pub/sub is not ready"
    await bob.assert_quiet()  # frozen: nothing arrives, and nothing is made up

    private_redis.thaw()
    thawed = time.monotonic()
    await until(lambda: node.broker.healthy, MAX_DELAY * 1.2 + 2 * SOCKET_TIMEOUT + SLACK)
    assert time.monotonic() - thawed < MAX_DELAY * 1.2 + 2 * SOCKET_TIMEOUT + SLACK

    # Nobody is closed: the node fills the gap from the channels' streams. The publish
    # that timed out was still in Redis's input buffer and ran on SIGCONT, so it arrives
    # (a 112 after a timeout means "maybe published"); the durable one is handed over.
    got = {}
    while len(got) < 2:
        pub = await bob.recv_push("pub", timeout=10)
        assert pub["channel"] not in got, f"a duplicate: {pub}"
        got[pub["channel"]] = (pub["offset"], pub["data"])
    assert got["quiet:f"] == (position["offset"] + 2, "during")
    assert got["log:f"] == (stored["offset"], "stored")
    retry = await alice.result("publish", channel="quiet:f", data="during", idempotency_key="k1")
    assert retry["offset"] == got["quiet:f"][0], "a retry with its idempotency key does not repeat it"
    await until(lambda: not node.durable.undelivered, 10)

    live = await alice.result("publish", channel="quiet:f", data="after")
    pub = await bob.recv_push("pub", channel="quiet:f")
    assert (pub["offset"], pub["data"]) == (live["offset"], "after")
    await bob.assert_quiet()
    assert not bob.ws.close_code


async def test_a_freeze_shorter_than_the_ping_interval_loses_nothing_and_closes_nobody(
    make_stagewire, tmp_path, private_redis
):
    settings = make_settings(
        tmp_path,
        broker={"backend": "redis", "redis_url": private_redis.url, "prefix": "blink", "socket_timeout": 5.0,
                "ping_interval": 5.0},
        namespaces=NAMESPACES,
    )
    sw = await make_stagewire(settings)
    alice, bob = await sw.client("alice"), await sw.client("bob")
    await bob.result("subscribe", channel="quiet:b")
    private_redis.freeze()
    publishing = asyncio.ensure_future(alice.result("publish", channel="quiet:b", data="through"))
    await asyncio.sleep(0.3)  # the publish waits in Redis's input buffer
    assert not publishing.done()
    private_redis.thaw()
    offset = (await publishing)["offset"]
    pub = await bob.recv_push("pub", channel="quiet:b")
    assert (pub["offset"], pub["data"]) == (offset, "through")
    assert sw.app[NODE].broker.reconnects == 0
    await bob.assert_quiet()
