"""Fixtures for the Python client's tests: SDK clients of a live server, closed afterwards."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from stagewire_client import Client

from tests.conftest import Stagewire

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def sdk() -> AsyncIterator[MakeClient]:
    """``await sdk(sw, "alice", **options)``: a connected :class:`Client` of ``sw`` as alice."""
    clients: list[Client] = []

    async def make(sw: Stagewire, username: str = "alice", **options: Any) -> Client:
        if "token" not in options:
            options["token"] = await sw.token(username)
        client = Client(sw.ws_url, **options)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()
