"""A durable channel published on by two servers: each one's position includes the other's publications."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.cluster.conftest import Cluster, channel_name
from tests.private_redis import private_redis  # noqa: F401

pytestmark = pytest.mark.redis

DURABLE = {"STAGEWIRE_NAMESPACES__LOG__PUBLISH": "client", "STAGEWIRE_NAMESPACES__LOG__PERSIST": "true"}


async def test_recovery_on_one_server_includes_what_the_other_published(cluster):
    a, b = await cluster.pair(env=DURABLE)
    channel = channel_name("two").replace("team:", "log:")
    alice, bob = await a.client("alice"), await b.client("bob")
    first = await alice.result("publish", channel=channel, data=1)  # a now knows offset 1
    for n in (2, 3):
        await bob.result("publish", channel=channel, data=n)  # published through b only

    fresh = await a.client("carol")
    assert (await fresh.result("subscribe", channel=channel))["offset"] == 3, "a's position is not a's last publish"
    late = await a.client("dave")
    recovery = await late.result("subscribe", channel=channel, recover=True, offset=first["offset"], epoch=first["epoch"])
    assert recovery["recovered"] is True
    assert [p["data"] for p in recovery["publications"]] == [2, 3]
    assert recovery["offset"] == 3
    caught_up = await a.client("erin")
    recovery = await caught_up.result("subscribe", channel=channel, recover=True, offset=3, epoch=first["epoch"])
    assert recovery == {"offset": 3, "epoch": first["epoch"], "recovered": True, "publications": []}

    after = await alice.result("publish", channel=channel, data=4)  # a numbers after b's rows
    assert after["offset"] == 4
    for client in (fresh, late, caught_up):
        assert (await client.recv_push("pub", channel=channel))["offset"] == 4


async def test_both_servers_store_durable_publications_while_redis_is_dead(tmp_path, private_redis):
    """Each server's last number goes stale when the other publishes; the database renumbers it, Redis or not."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        cluster = Cluster(tmp_path, private_redis.url, "durable-outage", http)
        try:
            a, b = await cluster.pair(env={**DURABLE, "STAGEWIRE_BROKER__SOCKET_TIMEOUT": "0.5",
                                           "STAGEWIRE_BROKER__RECONNECT_MAX_DELAY": "0.2"})
            channel = "log:outage"
            alice, bob = await a.client("alice"), await b.client("bob")
            first = await alice.result("publish", channel=channel, data=1)
            assert (await bob.result("publish", channel=channel, data=2))["offset"] == 2
            assert (await alice.result("publish", channel=channel, data=3))["offset"] == 3

            await private_redis.kill()
            during = await bob.result("publish", channel=channel, data=4)  # b last numbered 2
            assert (during["offset"], during["delayed"]) == (4, True)
            during = await alice.result("publish", channel=channel, data=5)
            assert (during["offset"], during["delayed"]) == (5, True)

            await private_redis.start()  # empty: the database has the stream
            carol = await a.client("carol")
            for _ in range(100):
                reply = await carol.call("subscribe", channel=channel, recover=True, offset=first["offset"],
                                         epoch=first["epoch"])
                if "result" in reply:
                    break
                assert reply["error"]["code"] == 112  # until a's pub/sub is back
                await asyncio.sleep(0.1)
            assert reply["result"]["recovered"] is True
            assert [p["data"] for p in reply["result"]["publications"]] == [2, 3, 4, 5]
        finally:
            await cluster.close()


async def test_one_key_published_through_both_servers_at_once_is_stored_once(cluster, database_url):
    """Both servers may find the key unused; the database keeps one row, and both answer with its offset."""
    a, b = await cluster.pair(env={**DURABLE, "STAGEWIRE_DATABASE__URL": database_url})
    alice, bob = await a.client("alice"), await b.client("bob")
    watcher = await a.client("carol")
    channel = "log:idem-race"
    await watcher.result("subscribe", channel=channel)
    for round_ in range(10):
        key = f"k{round_}"
        replies = await asyncio.gather(
            alice.result("publish", channel=channel, data=key, idempotency_key=key),
            bob.result("publish", channel=channel, data=key, idempotency_key=key),
        )
        assert replies[0]["offset"] == replies[1]["offset"] == round_ + 1, replies
    # A key stored twice would have taken an offset of its own, and been delivered twice.
    pushes = [await watcher.recv_push("pub", channel=channel) for _ in range(10)]
    assert [(p["offset"], p["data"]) for p in pushes] == [(n + 1, f"k{n}") for n in range(10)]
    await watcher.assert_quiet()
