"""The Redis transitions store: the shared contract, and what only a cluster has (nodes, death, races)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from server.broker.redis_client import RedisClient
from server.config import BrokerSettings
from server.hooks.transitions_redis import RedisTransitions
from tests.hooks.transitions_conformance import GRACE, TransitionsConformance, channel  # noqa: F401
from tests.redis_support import admin, prefix, redis_url  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_node(redis_url: str, prefix: str):
    """``make_node(grace, ttl)``: a started store of a node of its own (its own Redis client and id)."""
    clients: list[RedisClient] = []

    async def make(grace: float, ttl: float = 30.0, start: bool = True) -> RedisTransitions:
        client = RedisClient(BrokerSettings(backend="redis", redis_url=redis_url, prefix=prefix, socket_timeout=1.0))
        clients.append(client)
        store = RedisTransitions(client, secrets.token_hex(6), grace, ttl)
        if start:
            await store.start()
        return store

    yield make
    await asyncio.gather(*(client.close() for client in clients))


class TestRedisTransitions(TransitionsConformance):
    @pytest.fixture
    def make_store(self, make_node):
        return make_node

    @pytest.fixture
    def advance(self):
        async def advance(seconds: float) -> None:
            await asyncio.sleep(seconds)  # the scripts read Redis's clock

        return advance


async def test_two_nodes_holding_one_item_report_it_once_and_its_end_once(make_node, channel):
    a, b = await make_node(0.3), await make_node(0.3)
    results = await asyncio.gather(a.apply([(True, (channel, None))]), b.apply([(True, (channel, None))]))
    assert sorted(r[0] for r in results) == [False, True]  # one of them reports "occupied"
    await a.apply([(False, (channel, None))])
    await asyncio.sleep(0.5)
    assert await a.settle() == [] and await b.settle() == []  # b still holds it
    await b.apply([(False, (channel, None))])
    await asyncio.sleep(0.5)
    settled = await asyncio.gather(a.settle(), b.settle(), a.settle(), b.settle())
    assert sorted(item for s in settled for item in s) == [(channel, None)]  # exactly once, by one node


async def test_a_release_retried_after_an_unknown_outcome_keeps_the_grace(make_node, channel):
    a = await make_node(0.3)
    await a.apply([(True, (channel, "alice"))])
    await a.apply([(False, (channel, "alice"))])
    await a.apply([(False, (channel, "alice"))])  # sent again: idempotent, the deadline stays indexed
    await asyncio.sleep(0.5)
    assert await a.settle() == [(channel, "alice")]


async def test_the_holds_of_a_dead_node_are_released_for_it(make_node, channel, redis_url, prefix):
    survivor = await make_node(0.3, ttl=1.0)
    dead = await make_node(0.3, ttl=1.0)
    assert await dead.apply([(True, (channel, None)), (True, (channel, "alice"))]) == [True, True]
    assert await survivor.apply([(True, (channel, "bob"))]) == [True]
    await asyncio.sleep(1.2)  # the dead node's liveness ran out: it never sent a heartbeat
    assert await survivor.heartbeat() is True
    await asyncio.sleep(0.5)
    assert sorted(await survivor.settle(), key=str) == sorted([(channel, None), (channel, "alice")], key=str)
    async with admin(redis_url) as redis:
        assert not await redis.exists(f"{prefix}.hooks.index.{dead._node}")
        assert await redis.zscore(f"{prefix}.hooks.alive", dead._node) is None
    # The node comes back: it learns it was given up, and holding again reports it again.
    assert await dead.heartbeat() is False
    assert await dead.apply([(True, (channel, None))]) == [True]


async def test_leaving_removes_the_node_and_its_index(make_node, channel, redis_url, prefix):
    node = await make_node(0.3)
    await node.apply([(True, (channel, None))])
    await node.apply([(False, (channel, None))])
    assert await node.close() == []
    async with admin(redis_url) as redis:
        assert await redis.zscore(f"{prefix}.hooks.alive", node._node) is None
        assert not await redis.exists(f"{prefix}.hooks.index.{node._node}")
        # The grace of what it released still runs in Redis: another node settles it.
    other = await make_node(0.3)
    await asyncio.sleep(0.5)
    assert await other.settle() == [(channel, None)]
