"""Two server processes on a real three-master Redis Cluster (``[broker] cluster_nodes``).

The servers share a key prefix on the session's private cluster
(:mod:`tests.private_cluster`) and a database, as two nodes of one deployment
do; every command and subscription of a channel goes to its slot's master.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from redis.crc import key_slot

from tests.cluster.conftest import (
    Cluster, carries_on, channel_name, pipeline, presence_seen_alike, told_and_resubscribed,
)
from tests.private_cluster import (  # noqa: F401
    PrivateCluster, delete_prefix, private_cluster, require_cluster_binaries,
)

pytestmark = pytest.mark.redis


@pytest.fixture
async def rcluster(tmp_path: Path, private_cluster: PrivateCluster) -> AsyncIterator[tuple[Cluster, dict[str, str]]]:
    prefix = f"swrc-{secrets.token_hex(4)}"
    env = {"STAGEWIRE_BROKER__CLUSTER_NODES": ",".join(private_cluster.nodes[:2])}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        cluster = Cluster(tmp_path, "redis://unused.invalid:1/0", prefix, http)
        try:
            yield cluster, env
        finally:
            await cluster.close()
            await delete_prefix(private_cluster, prefix)


async def test_a_subscriber_on_one_server_gets_what_the_other_publishes_on_every_master(rcluster, private_cluster):
    cluster, env = rcluster
    a, b = await cluster.pair(env=env)
    channels = [channel_name(f"rc{i}") for i in range(9)]
    masters = {await private_cluster.owner(key_slot(f"{{{c}}}".encode())) for c in channels}
    subscriber = await a.client("sub")
    for channel in channels:
        assert (await subscriber.result("subscribe", channel=channel))["offset"] == 0
        await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    publisher = await b.client("pub")
    for round_ in range(3):
        for channel in channels:
            result = await publisher.result("publish", channel=channel, data={"round": round_})
            assert result["offset"] == round_ + 1
    pushes = [await subscriber.recv_push("pub") for _ in range(27)]
    by_channel = {c: [(p["offset"], p["data"]["round"]) for p in pushes if p["channel"] == c] for c in channels}
    assert by_channel == {c: [(1, 0), (2, 1), (3, 2)] for c in channels}
    assert len(masters) >= 2  # the channels live on more than one master
    await subscriber.assert_quiet()


async def test_presence_is_the_same_seen_from_either_server(rcluster):
    cluster, env = rcluster
    a, b = await cluster.pair(env=env)
    await presence_seen_alike(a, b)


async def receive(server, client, channel: str, count: int, epoch: str) -> list[tuple[int, object]]:
    """``count`` publications of ``channel``, in the order received, recovering when told to.

    A node that could not follow the move itself tells the subscriber: a
    ``disconnect`` with reconnect (the client reconnects and recovers) or an
    ``unsubscribe`` push (the client resubscribes and recovers). Either way the
    publications must all arrive, once each.
    """
    received: list[tuple[int, object]] = []
    while len(received) < count:
        message = await client.recv()
        if message.get("type") == "pub" and message.get("channel") == channel:
            received.append((message["offset"], message["data"]))
            continue
        if message.get("type") == "disconnect":
            assert message["reconnect"] is True, message
            client = await server.client("sub")
        elif message.get("type") != "unsubscribe" or message.get("channel") != channel:
            continue
        last = received[-1][0] if received else 0
        recovery = await client.result("subscribe", channel=channel, recover=True, offset=last, epoch=epoch)
        assert recovery["recovered"] is True, recovery
        received += [(p["offset"], p["data"]) for p in recovery["publications"]]
    return received


async def test_a_slot_moved_under_two_servers_loses_nothing(rcluster, private_cluster):
    cluster, env = rcluster
    a, b = await cluster.pair(env=env)
    channel = channel_name("moved")
    subscriber = await a.client("sub")
    epoch = (await subscriber.result("subscribe", channel=channel))["epoch"]
    await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    publisher = await b.client("pub")
    for i in range(5):
        await publisher.result("publish", channel=channel, data=i)

    slot = key_slot(f"{cluster.prefix}.pub.{{{channel}}}".encode())
    source = await private_cluster.owner(slot)
    target = next(port for port in private_cluster.ports if port != source)
    try:
        moving = asyncio.create_task(private_cluster.move_slot(slot, target))
        for i in range(5, 40):  # published during and after the move
            await publisher.result("publish", channel=channel, data=i)
        await moving
        for i in range(40, 45):
            await publisher.result("publish", channel=channel, data=i)
        assert await receive(a, subscriber, channel, 45, epoch) == [(i + 1, i) for i in range(45)]
    finally:
        await private_cluster.move_slot(slot, source)


async def test_pubsub_connections_killed_mid_stream_lose_nothing(rcluster, private_cluster):
    """Every master kills the subscriber node's pub/sub connections while publications flow."""
    cluster, env = rcluster
    a, b = await cluster.pair(env=env)
    channels = [channel_name(f"kill{i}") for i in range(6)]
    subscriber = await a.client("sub")
    epochs = {}
    for channel in channels:
        epochs[channel] = (await subscriber.result("subscribe", channel=channel))["epoch"]
        await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    publisher = await b.client("pub")

    async def publish(start: int, stop: int) -> None:
        for i in range(start, stop):
            for channel in channels:
                await publisher.result("publish", channel=channel, data=i)

    await publish(0, 5)
    killed = 0
    for port in private_cluster.ports:
        async with private_cluster.client(port) as client:
            for entry in await client.client_list(_type="pubsub"):
                if entry.get("name", "").startswith(f"stagewire-{cluster.prefix}"):
                    await client.client_kill_filter(_id=entry["id"])
                    killed += 1
    assert killed >= 2  # the subscriber's (one per master it holds channels on) and the publisher's
    await publish(5, 20)

    # Per channel: all 20, in order, once, whichever way the node catches up.
    received: dict[str, list[int]] = {c: [] for c in channels}
    client = subscriber
    while any(len(r) < 20 for r in received.values()):
        message = await client.recv()
        kind, channel = message.get("type"), message.get("channel")
        if kind == "pub":
            received[channel].append(message["data"])
        elif kind == "disconnect":
            assert message["reconnect"] is True, message
            client = await a.client("sub")
            for c in channels:
                await resubscribe(client, c, received, epochs)
        elif kind == "unsubscribe" and channel in received:
            await resubscribe(client, channel, received, epochs)
    assert received == {c: list(range(20)) for c in channels}


async def resubscribe(client, channel: str, received: dict[str, list[int]], epochs: dict[str, str]) -> None:
    recovery = await client.result("subscribe", channel=channel, recover=True,
                                   offset=len(received[channel]), epoch=epochs[channel])
    assert recovery["recovered"] is True, recovery
    received[channel] += [p["data"] for p in recovery["publications"]]


async def test_pipelined_publishes_of_one_client_keep_their_order_on_every_master(rcluster, private_cluster):
    """Two clients, one on each server, each send publishes to channels on all masters without waiting."""
    cluster, env = rcluster
    a, b = await cluster.pair(env=env)
    channels = [channel_name(f"pipe{i}") for i in range(6)]
    for _ in range(20):  # the cluster's view settles after the slot moves of the tests before
        masters = {await private_cluster.owner(key_slot(f"{{{c}}}".encode())) for c in channels}
        if len(masters) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(masters) >= 2  # the channels live on more than one master
    subscriber = await a.client("sub")
    for channel in channels:
        await subscriber.result("subscribe", channel=channel)
        await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    count = 240
    publishers = [await a.client("pub-a"), await b.client("pub-b")]
    replies = await asyncio.gather(*(pipeline(c, channels, tag, count) for c, tag in zip(publishers, "ab")))
    for of_one in replies:
        assert [r["id"] for r in of_one] == list(range(1, count + 1))  # replies in command order
        for k, channel in enumerate(channels):
            offsets = [r["result"]["offset"] for r in of_one[k::len(channels)]]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), channel  # in command order
    pushes = [await subscriber.recv_push("pub") for _ in range(2 * count)]
    for channel in channels:
        of_channel = [p for p in pushes if p["channel"] == channel]
        assert [p["offset"] for p in of_channel] == list(range(1, len(of_channel) + 1))
        for tag in "ab":
            sent = [i for i in range(count) if channels[i % len(channels)] == channel]
            assert [p["data"]["i"] for p in of_channel if p["data"]["from"] == tag] == sent
    await subscriber.assert_quiet()


async def test_the_cluster_restarted_empty_each_subscription_is_told_and_resubscribes(tmp_path: Path):
    """Every master SIGKILLed and started again with no data: the streams and their epochs are gone."""
    own = PrivateCluster(tmp_path / "own-cluster", *require_cluster_binaries())
    own.start()
    try:
        env = {"STAGEWIRE_BROKER__CLUSTER_NODES": ",".join(own.nodes)}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            cluster = Cluster(tmp_path, "redis://unused.invalid:1/0", f"swrc-{secrets.token_hex(4)}", http)
            try:
                a, b = await cluster.pair(env=env)
                channels = [channel_name(f"empty{i}") for i in range(6)]
                assert len({await own.owner(key_slot(f"{{{c}}}".encode())) for c in channels}) >= 2
                clients = [await a.client("user1"), await b.client("user2")]
                for client in clients:
                    for channel in channels:
                        await client.result("subscribe", channel=channel)
                publisher = await b.client("pub")
                old = {}
                for channel in channels:
                    for i in range(3):
                        old[channel] = await publisher.result("publish", channel=channel, data=i)

                await asyncio.to_thread(own.restart_empty)

                await told_and_resubscribed(clients, old, timeout=20)
                await carries_on(publisher, clients, channels)
            finally:
                await cluster.close()
    finally:
        own.close()
