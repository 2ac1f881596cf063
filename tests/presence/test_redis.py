"""The Redis presence store: the shared contract, plus concurrent sweeps, TTLs and outages.

Stores made by one ``make_store`` are separate ``RedisPresence`` instances
sharing the Redis named by ``tests.services.require_redis()``, like the nodes
of one cluster. Redis keeps the time, so ``advance`` really waits (TTLs here
are a few seconds at most). Each test has its own key prefix and deletes its
keys afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from server.broker.base import BrokerUnavailable
from server.config import BrokerSettings
from server.presence.base import PresenceEntry
from server.broker.redis_client import RedisClient
from server.presence.redis import BATCH, RedisPresence
from tests.redis_support import RedisProxy, admin, prefix, proxy, redis_url, socket_nobody_listens_on  # noqa: F401
from tests.presence.conformance import PresenceConformance, channel  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_store(redis_url: str, prefix: str):
    clients: list[RedisClient] = []

    async def make(ttl: float, **overrides) -> RedisPresence:
        """A store of its own node: its own Redis client, as every node has."""
        options = {"redis_url": redis_url, "prefix": prefix, "presence_ttl": ttl, "socket_timeout": 2.0}
        client = RedisClient(BrokerSettings(backend="redis", **{**options, **overrides}))
        clients.append(client)
        return RedisPresence(client)

    yield make
    await asyncio.gather(*(client.close() for client in clients))


@pytest.fixture
def advance():
    return asyncio.sleep


class TestRedisPresenceConformance(PresenceConformance):
    pass


async def test_concurrent_sweeps_report_each_departed_user_once(make_store, channel):
    nodes = [await make_store(0.5) for _ in range(4)]
    entries = [PresenceEntry(channel, f"c{i}", f"user{i % 25}") for i in range(200)]
    await asyncio.gather(*(nodes[i % 4].add(e) for i, e in enumerate(entries)))
    assert await nodes[0].stats(channel) == (200, 25)
    await asyncio.sleep(0.6)
    sweeps = await asyncio.gather(*(node.expire([channel, channel + "-empty"]) for node in nodes for _ in range(3)))
    reported = [pair for sweep in sweeps for pair in sweep]
    assert sorted(reported) == sorted((channel, f"user{i}") for i in range(25))
    assert await nodes[1].stats(channel) == (0, 0)


async def test_reads_skip_expired_clients_without_consuming_the_leave(make_store, channel):
    store = await make_store(0.5)
    await store.add(PresenceEntry(channel, "c1", "alice"))
    await store.add(PresenceEntry(channel, "c2", "bob"))
    await asyncio.sleep(0.3)
    await store.add(PresenceEntry(channel, "c3", "bob"))
    await asyncio.sleep(0.3)
    assert await store.users(channel) == {"bob": 1}
    assert await store.stats(channel) == (1, 1)
    assert await store.expire([channel]) == [(channel, "alice")]  # only a sweep reports


async def test_keys_expire_and_an_empty_channel_leaves_no_keys(make_store, redis_url, prefix, channel):
    store = await make_store(3)
    entry = PresenceEntry(channel, "c1", "alice")
    await store.add(entry)
    async with admin(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}.presence.*")]
        assert len(keys) == 3 and all(f"{{{channel}}}".encode() in key for key in keys)
        for key in keys:
            assert 0 < await client.pttl(key) <= 6000  # twice the presence TTL
        await store.remove(entry)
        assert [key async for key in client.scan_iter(match=f"{prefix}.presence.*")] == []


async def test_refresh_extends_live_clients_only(make_store, channel):
    store = await make_store(0.8)
    entries = [PresenceEntry(channel, f"c{i}", f"user{i % 7}") for i in range(BATCH * 2 + 10)]
    other = PresenceEntry(channel + "-b", "x", "alice")
    await asyncio.gather(*(store.add(e) for e in [*entries, other]))
    removed = entries.pop()
    await store.remove(removed)
    await asyncio.sleep(0.5)
    await store.refresh([*entries, removed, other])  # several script calls, two channels
    await asyncio.sleep(0.5)
    assert await store.stats(channel) == (len(entries), 7)
    assert await store.users(channel + "-b") == {"alice": 1}
    assert await store.expire([channel, channel + "-b"]) == []


async def test_killed_connections_are_replaced(make_store, redis_url, prefix, channel):
    store = await make_store(30)
    await store.add(PresenceEntry(channel, "c1", "alice"))
    async with admin(redis_url) as client:
        for c in await client.client_list():
            if c["name"] == f"stagewire-{prefix}":
                await client.client_kill_filter(_id=c["id"])
    assert await store.add(PresenceEntry(channel, "c2", "bob")) is True
    assert await store.users(channel) == {"alice": 1, "bob": 1}


async def test_unreachable_redis_fails_fast(make_store, channel):
    loop = asyncio.get_running_loop()
    with socket_nobody_listens_on() as port:
        store = await make_store(30, redis_url=f"redis://127.0.0.1:{port}/0")
        started = loop.time()
        for call in (store.add(PresenceEntry(channel, "c1", "alice")), store.users(channel),
                     store.refresh([PresenceEntry(channel, "c1", "alice")]), store.expire([channel])):
            with pytest.raises(BrokerUnavailable):
                await call
        assert loop.time() - started < 2.0


async def test_stalled_redis_times_out(make_store, proxy: RedisProxy, channel):  # noqa: F811
    store = await make_store(30, redis_url=f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=0.5)
    entry = PresenceEntry(channel, "c1", "alice")
    assert await store.add(entry) is True
    proxy.stall()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrokerUnavailable):
        await store.remove(entry)
    with pytest.raises(BrokerUnavailable):
        await store.stats(channel)
    assert loop.time() - started < 2.5
