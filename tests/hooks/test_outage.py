"""A receiver that is down loses nothing: ten seconds away, a server restart meanwhile, then every event."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import aiohttp

from tests.hooks.conftest import SECRET
from tests.hooks.receiver import Receiver
from tests.serverproc import ServerProcess

API_KEY = "outage-api-key"
CHANNELS = [f"log:outage-{i}" for i in range(3)]  # a persist namespace: offsets go on after the restart
DOWN_FOR = 10.0


async def publish(http: aiohttp.ClientSession, server: ServerProcess, channel: str, data: object) -> int:
    async with http.post(f"{server.url}/api/publish", json={"channel": channel, "data": data},
                         headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["offset"])


async def test_receiver_down_for_ten_seconds_across_a_restart_then_every_event_in_order_once(tmp_path):
    receiver = Receiver(SECRET)  # not listening yet: every POST is refused
    server = ServerProcess(tmp_path, {
        "STAGEWIRE_API__KEYS": API_KEY,
        "STAGEWIRE_WEBHOOKS__0__URL": receiver.url,
        "STAGEWIRE_WEBHOOKS__0__EVENTS": "publish",
        "STAGEWIRE_WEBHOOKS__0__CHANNELS": "log",  # not the ops:stats feed's publications
        "STAGEWIRE_WEBHOOKS__0__SECRET": SECRET,
        "STAGEWIRE_HOOKS__RETRY_MIN_DELAY": "0.2",
        "STAGEWIRE_HOOKS__RETRY_MAX_DELAY": "1.0",
        "STAGEWIRE_HOOKS__MAX_ATTEMPTS": "1000",
        "STAGEWIRE_HOOKS__BATCH_MAX": "7",
    })
    down_since = time.monotonic()
    await server.start()
    sent: dict[str, list[int]] = defaultdict(list)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for i in range(30):
                channel = CHANNELS[i % 3]
                sent[channel].append(await publish(http, server, channel, {"i": i}))
            assert await server.stop() == 0  # SIGTERM: a restart, with everything still undelivered
            await server.start()
            for i in range(30, 60):
                channel = CHANNELS[i % 3]
                sent[channel].append(await publish(http, server, channel, {"i": i}))
            await asyncio.sleep(max(0.0, DOWN_FOR - (time.monotonic() - down_since)))
            assert receiver.events == []
            await receiver.start()
            await receiver.wait_for(lambda events: len(events) >= 60, timeout=20, what="all 60 events")
            await asyncio.sleep(1.0)  # a duplicate would arrive in the meantime
    finally:
        await receiver.stop()
        await server.stop()

    events = receiver.events
    assert len(events) == 60, f"{len(events)} events, some twice?"
    assert len({e["id"] for e in events}) == 60
    got: dict[str, list[int]] = defaultdict(list)
    for event in events:
        got[event["channel"]].append(event["offset"])
    assert got == {channel: list(range(1, 21)) for channel in CHANNELS}  # in order per channel, none missing
    assert got == sent
    assert sorted(e["data"]["i"] for e in events) == list(range(60))
    assert all(post["verified"] for post in receiver.posts)
