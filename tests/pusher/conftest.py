"""Fixtures of the Pusher tests: a server with one Pusher app, raw Pusher clients."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from tests.pusher.helpers import PusherClient, pusher_settings


@pytest.fixture
async def pusher_app(make_stagewire, tmp_path):
    return await make_stagewire(pusher_settings(tmp_path))


@pytest.fixture
async def pusher_client(pusher_app) -> AsyncIterator[Callable[..., Awaitable[PusherClient]]]:
    clients: list[PusherClient] = []

    async def connect(server: Any = None, **kwargs: Any) -> PusherClient:
        client = await PusherClient.connect((server or pusher_app).url, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()
