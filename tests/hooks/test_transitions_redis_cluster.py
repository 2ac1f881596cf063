"""The Redis transitions store on a real three-master Redis Cluster: the shared contract.

Each node has its own cluster client; they share the test's key prefix on the
session's private cluster (:mod:`tests.private_cluster`). The scripts that
decide touch one channel's keys (one slot); the pending, alive and index keys
are of their own slots, reached through cluster pipelines.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from server.broker.redis_client import RedisClient
from server.config import BrokerSettings
from server.hooks.transitions_redis import RedisTransitions
from tests.hooks.transitions_conformance import TransitionsConformance, channel  # noqa: F401
from tests.private_cluster import PrivateCluster, prefix, private_cluster  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_node(private_cluster: PrivateCluster, prefix: str):
    clients: list[RedisClient] = []

    async def make(grace: float, ttl: float = 30.0, start: bool = True) -> RedisTransitions:
        settings = BrokerSettings(backend="redis", cluster_nodes=(private_cluster.nodes[0],), prefix=prefix,
                                  socket_timeout=2.0)
        client = RedisClient(settings)
        clients.append(client)
        store = RedisTransitions(client, secrets.token_hex(6), grace, ttl)
        if start:
            await store.start()
        return store

    yield make
    await asyncio.gather(*(client.close() for client in clients))


class TestRedisClusterTransitions(TransitionsConformance):
    @pytest.fixture
    def make_store(self, make_node):
        return make_node

    @pytest.fixture
    def advance(self):
        return asyncio.sleep
