"""Connections opened and dropped before ``connect`` leave nothing behind."""

from __future__ import annotations

import asyncio
import os

import websockets

from server.appkeys import NODE

COUNT = 10_000
IN_FLIGHT = 100


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_upgrades_dropped_without_connect_are_released(stagewire):
    node = stagewire.app[NODE]
    before = open_files()
    semaphore = asyncio.Semaphore(IN_FLIGHT)

    async def drop(i: int) -> None:
        async with semaphore:
            ws = await websockets.connect(stagewire.ws_url, subprotocols=["stagewire.json"], open_timeout=10)
            if i % 2:
                ws.transport.abort()  # gone without a close frame
            else:
                await ws.close()

    await asyncio.gather(*(drop(i) for i in range(COUNT)))
    for _ in range(200):  # the server notices each close as it reads it
        if not node.connections:
            break
        await asyncio.sleep(0.05)
    assert node.connections == {}
    assert node.counters.connections_accepted == COUNT
    # Sockets of both ends were in this process: all closed again (a little slack for the loop's own).
    assert open_files() <= before + 5
    client = await stagewire.client("alice")  # and the server still serves
    assert await client.result("ping") == {}
