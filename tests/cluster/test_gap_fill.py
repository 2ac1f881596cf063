"""Pub/sub blips on a Redis of the test's own: gap fill, and resubscribe when Redis lost the streams.

Two server processes share a private ``redis-server``, so ``CLIENT KILL TYPE
pubsub`` and a restart touch nobody else.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.cluster.conftest import Cluster, carries_on, channel_name, told_and_resubscribed
from tests.helpers import WSClient
from tests.private_redis import PrivateRedis, private_redis  # noqa: F401

pytestmark = pytest.mark.redis

COUNT = 400


@pytest.fixture
async def own_cluster(tmp_path: Path, private_redis: PrivateRedis) -> AsyncIterator[Cluster]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        cluster = Cluster(tmp_path, private_redis.url, f"swgap-{secrets.token_hex(4)}", http)
        try:
            yield cluster
        finally:
            await cluster.close()


async def subscribed(cluster: Cluster, channels: list[str], users: list[str]) -> list[WSClient]:
    """One client per user, spread over the servers, subscribed to every channel (joins consumed)."""
    clients = []
    for i, user in enumerate(users):
        client = await cluster.servers[i % len(cluster.servers)].client(user)
        for channel in channels:
            await client.result("subscribe", channel=channel)
        clients.append(client)
    return clients


async def pubs_of(client: WSClient, channels: list[str], count: int) -> dict[str, list[int]]:
    """The offsets of the next ``count`` publications of each channel, as they arrived; fails on anything else."""
    seen: dict[str, list[int]] = {channel: [] for channel in channels}
    while sum(len(v) for v in seen.values()) < count * len(channels):
        message = await client.recv()
        assert message.get("type") in ("pub", "join", "ping"), message
        if message.get("type") == "pub":
            seen[message["channel"]].append(message["offset"])
    return seen


async def test_pubsub_killed_mid_stream_every_publication_once_in_order_nobody_closed(
        own_cluster: Cluster, private_redis: PrivateRedis):
    a, b = await own_cluster.pair()
    channels = [channel_name(f"blip{i}") for i in range(3)]
    clients = await subscribed(own_cluster, channels, ["user1", "user2", "user3", "user4"])
    publisher = await a.client("pub")

    async def publish_all() -> None:
        # Pipelined: 20 publishes per frame, replies read at the end.
        sent = 0
        for start in range(0, COUNT, 20):
            for channel in channels:
                ids = [await publisher.send("publish", channel=channel, data=i) for i in range(start, start + 20)]
                sent += len(ids)
            await asyncio.sleep(0.02)
        replies = [await publisher.reply(i) for i in range(ids[-1] - sent + 1, ids[-1] + 1)]
        assert all("result" in r for r in replies), [r for r in replies if "result" not in r][:3]

    task = asyncio.create_task(publish_all())
    admin = Redis.from_url(private_redis.url)
    try:
        await asyncio.sleep(0.1)  # mid-stream: 20 rounds of 20 ms, reconnecting takes 80 ms at least
        killed = await admin.client_kill_filter(_type="pubsub")
        assert killed >= 2
        await asyncio.wait_for(task, 30)
    finally:
        await admin.aclose()

    for client in clients:
        seen = await pubs_of(client, channels, COUNT)
        for channel in channels:
            assert seen[channel] == list(range(1, COUNT + 1)), channel  # once each, in order
    for client in clients:
        await client.result("ping")  # still connected: no disconnect, no unsubscribe
    # Pub/sub lost some (publishing went on while it reconnected): they came from the streams.
    assert sum([await metric(s, "stagewire_gap_filled_publications_total") for s in (a, b)]) > 0
    assert sum([await metric(s, "stagewire_stream_resets_total") for s in (a, b)]) == 0


async def test_redis_restarted_empty_each_subscription_is_told_and_resubscribes(
        own_cluster: Cluster, private_redis: PrivateRedis):
    a, b = await own_cluster.pair()
    channels = [channel_name(f"reset{i}") for i in range(2)]
    clients = await subscribed(own_cluster, channels, ["user1", "user2"])
    publisher = await b.client("pub")
    old = {}
    for channel in channels:
        for i in range(5):
            old[channel] = await publisher.result("publish", channel=channel, data=i)

    await private_redis.restart()  # comes back empty: streams and their epochs are gone

    await told_and_resubscribed(clients, old, timeout=15)
    await carries_on(publisher, clients, channels)
    for client in clients:
        await client.result("ping")


async def metric(server, name: str) -> float:
    async with server.cluster.http.get(f"{server.url}/metrics",
                                       headers={"Authorization": "Bearer cluster-api-key"}) as r:
        text = await r.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))
