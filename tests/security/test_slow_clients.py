"""Connections that hold the server without a request: trickled headers, nothing sent at all."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import make_settings

TIMEOUT = 0.5


async def test_trickled_headers_are_cut_off_at_the_header_timeout(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"header_timeout": TIMEOUT}))
    reader, writer = await asyncio.open_connection("127.0.0.1", sw.server.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()

    async def trickle() -> None:
        for i in range(100):  # a header line every 0.1 s: it would take 10 s to finish
            writer.write(f"X-Slow-{i}: y\r\n".encode())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b"", "closed without an answer"
    finally:
        task.cancel()
        writer.close()
    assert time.monotonic() - started < TIMEOUT + 1.0


async def test_a_connection_that_sends_nothing_is_closed(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"header_timeout": TIMEOUT}))
    reader, writer = await asyncio.open_connection("127.0.0.1", sw.server.port)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_an_open_websocket_outlives_the_header_timeout(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"header_timeout": TIMEOUT}))
    client = await sw.client("alice")
    await asyncio.sleep(TIMEOUT * 3)  # longer than the header timeout, on purpose
    assert (await client.result("ping")) == {}
