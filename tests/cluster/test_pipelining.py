"""Pipelined publishes through two server processes sharing one Redis."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.conftest import channel_name, pipeline

pytestmark = pytest.mark.redis

COUNT, FRAME = 300, 20


async def test_pipelined_publishes_of_one_client_keep_their_order(cluster):
    a, b = await cluster.pair()
    channel = channel_name("pipelined")
    subscriber = await b.client("sub")
    await subscriber.result("subscribe", channel=channel)
    await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    publishers = [await a.client("pub-a"), await b.client("pub-b")]

    replies = await asyncio.gather(*(pipeline(c, [channel], tag, COUNT, FRAME) for c, tag in zip(publishers, "ab")))
    for of_one in replies:
        assert [r["id"] for r in of_one] == list(range(1, COUNT + 1))  # replies in command order
        offsets = [r["result"]["offset"] for r in of_one]
        assert offsets == sorted(offsets) and len(set(offsets)) == COUNT  # offsets in command order
    assert sorted(r["result"]["offset"] for of_one in replies for r in of_one) == list(range(1, 2 * COUNT + 1))

    pushes = [await subscriber.recv_push("pub", channel=channel) for _ in range(2 * COUNT)]
    assert [p["offset"] for p in pushes] == list(range(1, 2 * COUNT + 1))
    for tag in "ab":
        assert [p["data"]["i"] for p in pushes if p["data"]["from"] == tag] == list(range(COUNT))
    await subscriber.assert_quiet()
