"""Two server processes on two ports, one Redis: ordering, presence, join and leave."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.conftest import channel_name, presence_seen_alike
from tests.helpers import WSClient

pytestmark = pytest.mark.redis


async def publish_many(client: WSClient, channel: str, tag: str, count: int) -> list[int]:
    """Send ``count`` publishes without waiting in between; the offsets they got."""
    ids = [await client.send("publish", channel=channel, data={"from": tag, "i": i}) for i in range(count)]
    replies = [await client.reply(command_id) for command_id in ids]
    assert all("result" in r for r in replies), [r for r in replies if "result" not in r][:3]
    return [r["result"]["offset"] for r in replies]


async def presence_pushes_until(client: WSClient, channel: str, marker: str) -> list[tuple[str, str]]:
    """The join/leave pushes received before the publication ``marker``."""
    seen = []
    while True:
        message = await client.recv()
        if message.get("type") == "pub" and message.get("data") == marker:
            return seen
        if message.get("type") in ("join", "leave") and message.get("channel") == channel:
            seen.append((message["type"], message["info"]["user"]))


async def test_publications_from_both_servers_arrive_in_offset_order(cluster):
    a, b = await cluster.pair()
    channel = channel_name("order")
    subscriber = await a.client("sub")
    assert (await subscriber.result("subscribe", channel=channel))["offset"] == 0
    await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    from_b, from_a = await b.client("pub-b"), await a.client("pub-a")

    offsets = await asyncio.gather(publish_many(from_b, channel, "b", 200), publish_many(from_a, channel, "a", 60))
    assert sorted(offsets[0] + offsets[1]) == list(range(1, 261))  # one sequence, whichever node published

    pushes = [await subscriber.recv_push("pub", channel=channel) for _ in range(260)]
    assert [p["offset"] for p in pushes] == list(range(1, 261))
    assert sorted((p["data"]["from"], p["data"]["i"]) for p in pushes) == sorted(
        [("b", i) for i in range(200)] + [("a", i) for i in range(60)])
    await subscriber.assert_quiet()


async def test_presence_is_the_same_seen_from_either_server(cluster):
    a, b = await cluster.pair()
    channel, clients = await presence_seen_alike(a, b)

    await clients[1].close()  # alice's tab on B
    for client in (clients[0], clients[2]):
        stats = {"clients": 2, "users": 2}
        for _ in range(50):  # the server handles the close asynchronously
            if await client.result("presence_stats", channel=channel) == stats:
                break
            await asyncio.sleep(0.05)
        assert await client.result("presence_stats", channel=channel) == stats


async def test_a_user_on_both_servers_joins_once_and_leaves_with_the_last_client(cluster):
    a, b = await cluster.pair()
    channel = channel_name("joinleave")
    watcher = await a.client("watcher")
    await watcher.result("subscribe", channel=channel)
    await watcher.recv_push("join", channel=channel, info={"user": "watcher"})
    marker_sender = await b.client("marker")  # publishes markers, never subscribes

    async def nothing_else(marker: str) -> None:
        # Joins and leaves are announced in the background: give a stray one
        # time to arrive; the marker (same Redis channel, so in order) ends the window.
        await asyncio.sleep(0.3)
        await marker_sender.result("publish", channel=channel, data=marker)
        assert await presence_pushes_until(watcher, channel, marker) == []

    alice_a = await a.client("alice")
    await alice_a.result("subscribe", channel=channel)
    await watcher.recv_push("join", channel=channel, info={"user": "alice"})
    await nothing_else("m1")

    alice_b = await b.client("alice")
    await alice_b.result("subscribe", channel=channel)
    await nothing_else("m2")  # no second join: alice was already there, on A

    await alice_a.close()
    await nothing_else("m3")  # no leave: alice is still there, on B

    await alice_b.result("unsubscribe", channel=channel)
    await watcher.recv_push("leave", channel=channel, info={"user": "alice"})
    await nothing_else("m4")
    assert await watcher.result("presence", channel=channel) == {"users": [{"user": "watcher", "connections": 1}]}
