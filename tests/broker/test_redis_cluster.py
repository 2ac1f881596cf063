"""The Redis broker on a real three-master Redis Cluster: the shared contract, slots, slot moves.

Brokers made by one ``make_broker`` are separate nodes (each its own cluster
client) sharing the test's key prefix on the session's private cluster
(:mod:`tests.private_cluster`). Pub/sub is sharded: each channel is held on
the master of its slot.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any, AsyncIterator, Callable

import pytest
from redis.asyncio.cluster import NodesManager
from redis.crc import key_slot

from server.broker.redis import RedisBroker
from server.broker.redis_client import RedisClient
from server.broker.redis_cluster import slot_masters
from server.config import BrokerSettings
from server.errors import BrokerUnavailable
from tests.broker.conformance import BrokerConformance, RecordingHandler
from tests.private_cluster import PrivateCluster, prefix, private_cluster  # noqa: F401

pytestmark = pytest.mark.redis

FAST = dict(socket_timeout=2.0, ping_interval=0.5, reconnect_min_delay=0.02, reconnect_max_delay=0.2)
_ids = itertools.count()


@pytest.fixture
def channel() -> str:
    return f"test:ch{next(_ids)}"


class Brokers:
    """The brokers of one test: separate nodes, each with a cluster client of its own; all closed after it."""

    def __init__(self, cluster_nodes: tuple[str, ...], prefix: str) -> None:
        self.cluster_nodes, self.prefix = cluster_nodes, prefix
        self.brokers: list[RedisBroker] = []
        self.clients: list[RedisClient] = []

    async def make(self, handler: RecordingHandler, **overrides: Any) -> RedisBroker:
        options = {"cluster_nodes": self.cluster_nodes, "prefix": self.prefix, **FAST, **overrides}
        self.clients.append(RedisClient(BrokerSettings(backend="redis", **options)))
        self.brokers.append(RedisBroker(self.clients[-1]))
        await self.brokers[-1].start(handler)
        return self.brokers[-1]

    async def close(self) -> None:
        await asyncio.gather(*(broker.close() for broker in self.brokers))
        await asyncio.gather(*(client.close() for client in self.clients))


@pytest.fixture
async def make_broker(private_cluster: PrivateCluster, prefix: str) -> AsyncIterator[Callable[..., Any]]:
    brokers = Brokers((private_cluster.nodes[0],), prefix)
    yield brokers.make
    await brokers.close()


class TestRedisClusterBrokerConformance(BrokerConformance):
    multi_node = True


class OrderedHandler(RecordingHandler):
    """Also records publications and gaps in one sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []

    def on_publication(self, pub) -> None:
        self.events.append(pub.offset)
        super().on_publication(pub)

    def on_gap(self, channels) -> None:
        self.events.append("gap")
        super().on_gap(channels)


def channels_on_every_master(count: int) -> list[str]:
    """Channel names whose slots are spread (``count`` of them, distinct slots)."""
    return [f"test:spread{next(_ids)}-{i}" for i in range(count)]


async def test_a_channels_keys_and_pubsub_share_one_slot(make_broker, private_cluster, prefix, channel):
    broker = await make_broker(RecordingHandler())
    await broker.publish(channel, "x", idempotency_key="k1")
    slot = key_slot(f"{prefix}.pub.{{{channel}}}".encode())
    async with private_cluster.client(await private_cluster.owner(slot)) as client:
        keys = sorted([k async for k in client.scan_iter(match=f"{prefix}.*")])
    assert keys == sorted(k.encode() for k in (
        f"{prefix}.meta.{{{channel}}}", f"{prefix}.stream.{{{channel}}}", f"{prefix}.idem.{{{channel}}}.k1"))


async def test_channels_on_every_master_are_delivered_to_every_node(make_broker, private_cluster):
    a_handler, b_handler = RecordingHandler(), RecordingHandler()
    a, b = await make_broker(a_handler), await make_broker(b_handler)
    names = channels_on_every_master(30)
    owners = {await private_cluster.owner(key_slot(f"x.pub.{{{n}}}".encode())) for n in names}
    assert len(owners) == 3  # the 30 channels really span the three masters
    await asyncio.gather(*(a.subscribe(n) for n in names))
    await asyncio.gather(*(b.publish(n, i) for i, n in enumerate(names)))
    pubs = await a_handler.wait_for("publications", 30)
    assert sorted((p.channel, p.data, p.offset) for p in pubs) == sorted((n, i, 1) for i, n in enumerate(names))
    assert b_handler.publications == []


async def test_a_slot_moved_to_another_master_keeps_delivering_and_reports_the_gap(
        make_broker, private_cluster, prefix, channel):
    handler = RecordingHandler()
    subscriber, publisher = await make_broker(handler), await make_broker(RecordingHandler())
    await subscriber.subscribe(channel)
    await publisher.publish(channel, "before")
    await handler.wait_for("publications", 1)

    slot = key_slot(f"{prefix}.pub.{{{channel}}}".encode())
    source = await private_cluster.owner(slot)
    target = next(port for port in private_cluster.ports if port != source)
    try:
        await private_cluster.move_slot(slot, target)
        # The old master ended the subscription; the node subscribes on the new one
        # and reports the channel, as after a reconnect, so it catches up from the stream.
        assert await handler.wait_for("gaps", 1) == [channel]
        assert subscriber.healthy
        position = await publisher.publish(channel, "after")
        assert position.offset == 2  # the channel's meta and stream moved with the slot
        pubs = await handler.wait_for("publications", 2)
        assert [(p.data, p.offset) for p in pubs] == [("before", 1), ("after", 2)]
        history, _ = await subscriber.history(channel)
        assert [p.data for p in history] == ["before", "after"]
    finally:
        await private_cluster.move_slot(slot, source)


async def test_publications_during_a_slot_move_are_never_skipped_without_a_gap_first(
        make_broker, private_cluster, prefix, channel):
    """Whatever pub/sub lost while the slot moved, the gap is reported before anything after it."""
    handler = OrderedHandler()
    subscriber, publisher = await make_broker(handler), await make_broker(RecordingHandler())
    await subscriber.subscribe(channel)
    slot = key_slot(f"{prefix}.pub.{{{channel}}}".encode())
    source = await private_cluster.owner(slot)
    target = next(port for port in private_cluster.ports if port != source)
    try:
        moving = asyncio.create_task(private_cluster.move_slot(slot, target))
        offsets = []
        while not moving.done() or len(offsets) < 20:
            offsets.append((await publisher.publish(channel, len(offsets))).offset)
        await moving
        assert offsets == list(range(1, len(offsets) + 1))
        await handler.wait_for("gaps", 1)
        await handler.wait_for("publications", 1)
        before_gap = handler.events[:handler.events.index("gap")]
        assert before_gap == list(range(1, len(before_gap) + 1))  # nothing skipped before the report
        last = await publisher.publish(channel, "last")
        await wait_for_offset(handler, last.offset)
    finally:
        await private_cluster.move_slot(slot, source)


async def until(check: Callable[[], Any]) -> None:
    while not await check():
        await asyncio.sleep(0.01)


async def wait_for_offset(handler: RecordingHandler, offset: int) -> None:
    async def poll() -> None:
        while not handler.publications or handler.publications[-1].offset < offset:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 5)


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster of this test's own, with one replica: a failover changes the topology for good."""
    from tests.private_cluster import require_cluster_binaries

    cluster = PrivateCluster(tmp_path / "cluster", *require_cluster_binaries())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def own_brokers(own_cluster: PrivateCluster, prefix: str) -> AsyncIterator[Brokers]:
    """Brokers on ``own_cluster``, knowing all of its nodes."""
    brokers = Brokers(tuple(own_cluster.nodes), prefix)
    yield brokers
    await brokers.close()


@pytest.mark.parametrize("map_loads", ["live", "frozen"])
async def test_a_failover_moves_channels_to_the_promoted_replica(
        own_cluster, own_brokers, prefix, channel, map_loads, monkeypatch):
    """The subscription ends up on the new master, even when the reloaded slot map still names the old one.

    ``frozen``: the subscriber's slot-map reloads keep the map from before the
    failover, as when the node asked has not heard of the promotion yet; the
    demoted master (a replica now, which accepts SSUBSCRIBE) must not get the
    subscription back.
    """
    cluster = own_cluster
    handler = OrderedHandler()
    subscriber, publisher = await own_brokers.make(handler), await own_brokers.make(RecordingHandler())
    await subscriber.subscribe(channel)
    await publisher.publish(channel, "before")
    await handler.wait_for("publications", 1)
    if map_loads == "frozen":
        frozen, reload = own_brokers.clients[0].cluster.nodes_manager, NodesManager.initialize

        async def initialize(self: NodesManager, *args: Any, **kwargs: Any) -> None:
            if self is not frozen:
                await reload(self, *args, **kwargs)
        monkeypatch.setattr(NodesManager, "initialize", initialize)
    name = f"{prefix}.pub.{{{channel}}}"
    master = await cluster.owner(key_slot(name.encode()))
    replica = await asyncio.to_thread(cluster.add_replica, master)
    await asyncio.to_thread(cluster.failover, replica)
    assert await cluster.owner(key_slot(name.encode())) == replica

    # The old master, now a replica, dropped the subscription: the node
    # subscribes on the new master and reports the gap before anything else.
    await handler.wait_for("gaps", 1)
    assert await shard_subscribers(cluster, replica, name) == 1
    assert await shard_subscribers(cluster, master, name) == 0
    position = await publisher.publish(channel, "after")  # the first command may find the old master
    assert position.offset == 2  # the replica had the channel's keys
    await wait_for_offset(handler, 2)
    assert handler.events == [1, "gap", 2]


async def test_a_master_killed_its_replica_promoted_the_channel_carries_on_there(
        own_cluster, own_brokers, prefix, channel):
    """A crash, not a handover: the master SIGKILLed, its replica elected by the cluster.

    Until the election, publishes to the slot fail (the broker says so) and the
    subscription cannot be held anywhere; then both move to the promoted
    replica by themselves, the gap is reported before anything after it, and
    the channel's numbering goes on from what the replica had.
    """
    cluster = own_cluster
    handler = OrderedHandler()
    subscriber, publisher = await own_brokers.make(handler), await own_brokers.make(RecordingHandler())
    await subscriber.subscribe(channel)
    name = f"{prefix}.pub.{{{channel}}}"
    master = await cluster.owner(key_slot(name.encode()))
    replica = await asyncio.to_thread(cluster.add_replica, master)
    await publisher.publish(channel, "before")
    await handler.wait_for("publications", 1)
    async with cluster.client(replica) as client:  # the replica has it before the crash
        await client.execute_command("READONLY")
        await asyncio.wait_for(until(lambda: client.exists(f"{prefix}.meta.{{{channel}}}")), 5)

    assert await asyncio.to_thread(cluster.kill_master, master) == replica
    assert await cluster.owner(key_slot(name.encode())) == replica
    # The subscription is held on the promoted replica, and the gap reported, by themselves.
    await handler.wait_for("gaps", 1, timeout=20)
    assert await shard_subscribers(cluster, replica, name) == 1
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            position = await publisher.publish(channel, "after")
            break
        except BrokerUnavailable:  # the publisher's slot map may still name the dead master
            assert asyncio.get_running_loop().time() < deadline, "publishes never reached the promoted replica"
            await asyncio.sleep(0.1)
    assert position.offset == 2  # numbered after what the replica had
    await wait_for_offset(handler, 2)
    assert handler.events == [1, "gap", 2]
    assert subscriber.healthy and publisher.healthy


async def shard_subscribers(cluster: PrivateCluster, port: int, name: str) -> int:
    """How many connections of the node on ``port`` itself hold shard channel ``name``."""
    async with cluster.client(port) as client:
        _, count = await client.execute_command("PUBSUB", "SHARDNUMSUB", name)
    return int(count)


def test_slot_masters_reads_the_masters_of_a_cluster_nodes_reply():
    nodes = (
        "a1 127.0.0.1:7001@17001 myself,slave b2 0 0 3 connected\n"
        "b2 127.0.0.1:7002@17002 master - 0 0 3 connected 0-2 5 [3->-c3]\n"
        "c3 127.0.0.1:7003@17003 master - 0 0 2 connected 3 [4-<-b2]\n"
        "d4 127.0.0.1:7004@17004 master,fail - 0 0 1 disconnected 4\n"
    ).encode()
    assert slot_masters(nodes) == {
        0: "127.0.0.1:7002", 1: "127.0.0.1:7002", 2: "127.0.0.1:7002", 5: "127.0.0.1:7002", 3: "127.0.0.1:7003"}
