"""The Redis presence store on a real three-master Redis Cluster: the shared contract.

Stores made by one ``make_store`` are separate nodes (each its own cluster
client) sharing the test's key prefix on the session's private cluster
(:mod:`tests.private_cluster`); every script touches the keys of one channel,
one slot. Redis keeps the time, so ``advance`` really waits.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.crc import key_slot

from server.broker.redis_client import RedisClient
from server.config import BrokerSettings
from server.presence.base import PresenceEntry
from server.presence.redis import RedisPresence
from tests.presence.conformance import PresenceConformance, channel  # noqa: F401
from tests.private_cluster import PrivateCluster, prefix, private_cluster  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_store(private_cluster: PrivateCluster, prefix: str):
    clients: list[RedisClient] = []

    async def make(ttl: float, **overrides) -> RedisPresence:
        options = {"cluster_nodes": tuple(private_cluster.nodes[:1]), "prefix": prefix,
                   "presence_ttl": ttl, "socket_timeout": 2.0, **overrides}
        client = RedisClient(BrokerSettings(backend="redis", **options))
        clients.append(client)
        return RedisPresence(client)

    yield make
    await asyncio.gather(*(client.close() for client in clients))


@pytest.fixture
def advance():
    return asyncio.sleep


class TestRedisClusterPresenceConformance(PresenceConformance):
    pass


async def test_sweeps_and_refreshes_of_channels_on_every_master_are_batched(make_store, private_cluster):
    """Refresh and expire pipeline scripts over channels of all three masters (EVAL in a cluster pipeline)."""
    channels = [f"presence:spread-{secrets.token_hex(3)}-{i}" for i in range(30)]
    owners = {await private_cluster.owner(key_slot(f"{{{c}}}".encode())) for c in channels}
    assert len(owners) == 3
    a, b = await make_store(3), await make_store(3)
    entries = [PresenceEntry(c, f"c{i}", f"user{i}") for i, c in enumerate(channels)]
    await asyncio.gather(*(a.add(e) for e in entries))
    await asyncio.sleep(1.5)
    await a.refresh(entries[:15])  # the first half stays past the first TTL
    await asyncio.sleep(2.0)
    gone = await b.expire(channels)
    assert sorted(gone) == sorted((e.channel, e.user) for e in entries[15:])
    assert [await b.stats(c) for c in channels[:15]] == [(1, 1)] * 15
