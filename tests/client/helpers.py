"""Helpers for tests of the Python client: waiting for conditions, reading subscriptions."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

from stagewire_client import Publication, Subscription

TIMEOUT = 5.0


async def eventually(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def next_pub(sub: Subscription, timeout: float = TIMEOUT) -> Publication:
    """The next publication of ``sub``, within ``timeout`` seconds."""
    return await asyncio.wait_for(anext(sub), timeout)


async def next_pubs(sub: Subscription, count: int, timeout: float = TIMEOUT) -> list[Publication]:
    return [await next_pub(sub, timeout) for _ in range(count)]


def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
