"""A burst of publications from Redis reaches a subscriber as one WebSocket frame (``write_delay = 0``).

Everything the pub/sub connection already read is delivered to the hub before
the writers flush, so what Redis sent in one go leaves in one write per
connection.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from server.appkeys import NODE
from tests.conftest import make_settings
from tests.services import require_redis

pytestmark = pytest.mark.redis

BURST = 20


async def test_a_burst_from_redis_is_one_frame_per_subscriber(make_stagewire, tmp_path):
    url = require_redis()
    prefix = f"swtest-{secrets.token_hex(4)}"
    # No periodic position check, no ping push and no stats publication (one a
    # second by default) meanwhile: the round trips and frames counted below
    # are the burst's alone.
    sw = await make_stagewire(make_settings(
        tmp_path, broker={"backend": "redis", "redis_url": url, "prefix": prefix, "position_check_interval": 0},
        client={"write_delay": 0.0, "ping_interval": 3600}, server={"stats_interval": 0}))
    try:
        clients = [await sw.client("alice"), await sw.client("bob", subprotocol="stagewire.msgpack")]
        for client in clients:
            await client.result("subscribe", channel="quiet:burst")
        node = sw.app[NODE]
        # One publication first: on a Redis that has not run the publish script yet, the
        # first EVALSHA of each command is answered NOSCRIPT and sent again as EVAL.
        await node.publish("quiet:burst", -1)
        for client in clients:
            frame = await asyncio.wait_for(client.ws.recv(), 5)
            assert [m["data"] for m in client._decode_frame(frame)] == [-1]
        before = node.broker.round_trips
        # Issued in one loop iteration: one round trip, so Redis sends the burst in one go.
        await asyncio.gather(*(node.publish("quiet:burst", i) for i in range(BURST)))
        assert node.broker.round_trips == before + 1
        for client in clients:
            frame = await asyncio.wait_for(client.ws.recv(), 5)
            messages = client._decode_frame(frame)
            assert [(m["type"], m["data"]) for m in messages] == [("pub", i) for i in range(BURST)]
    finally:
        admin = Redis.from_url(url)
        keys = [key async for key in admin.scan_iter(match=f"{prefix}.*", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()
