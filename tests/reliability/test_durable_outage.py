"""A durable publication stored while the broker is down is published: acknowledged, then delivered."""

from __future__ import annotations

import asyncio

import pytest

from server.appkeys import NODE
from tests.conftest import NAMESPACES, make_settings
from tests.private_redis import PrivateRedis, private_redis  # noqa: F401

pytestmark = pytest.mark.redis


def durable_on(tmp_path, redis: PrivateRedis):
    return make_settings(
        tmp_path,
        broker={"backend": "redis", "redis_url": redis.url, "prefix": "outage", "socket_timeout": 0.5,
                "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2, "ping_interval": 0.5},
        namespaces={**NAMESPACES, "log": {"subscribe": "authenticated", "publish": "client", "persist": True}},
    )


async def test_a_publication_committed_while_redis_is_dead_is_acknowledged_and_then_published(
    make_stagewire, tmp_path, private_redis
):
    sw = await make_stagewire(durable_on(tmp_path, private_redis))
    node = sw.app[NODE]
    alice = await sw.client("alice")
    first = await alice.result("publish", channel="log:outage", data="before")
    assert first["offset"] == 1 and "delayed" not in first

    await private_redis.kill()
    during = await alice.result("publish", channel="log:outage", data="during")
    # Stored, so published: its offset, not error 112, and a flag that live delivery waits.
    assert during == {"offset": 2, "epoch": first["epoch"], "delayed": True}
    assert node.durable.undelivered == {"log:outage"}

    await private_redis.start()  # back, and empty
    for _ in range(200):  # the redelivery task retries with a capped backoff
        if not node.durable.undelivered:
            break
        await asyncio.sleep(0.05)
    assert node.durable.undelivered == set(), "the stored row was handed to the broker"
    position = await node.broker.position("log:outage")
    assert (position.offset, position.epoch) == (2, first["epoch"]), "the broker took the stored offsets"

    bob = await sw.client("bob")
    recovery = await bob.result("subscribe", channel="log:outage", recover=True, offset=0, epoch=first["epoch"])
    assert recovery["recovered"] is True
    assert [(p["offset"], p["data"]) for p in recovery["publications"]] == [(1, "before"), (2, "during")]
    after = await alice.result("publish", channel="log:outage", data="after")
    assert after["offset"] == 3 and "delayed" not in after
    assert (await bob.recv_push("pub", channel="log:outage"))["data"] == "after"


async def test_a_publication_not_stored_is_still_error_112(make_stagewire, tmp_path, private_redis):
    """A new channel's position must come from the broker first: with Redis dead, nothing is stored."""
    sw = await make_stagewire(durable_on(tmp_path, private_redis))
    alice = await sw.client("alice")
    await private_redis.kill()
    error = await alice.assert_error(112, "publish", channel="log:never-seen", data="x")
    assert error["temporary"] is True
