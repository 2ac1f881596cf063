"""Cross-site WebSocket (and EventSource) hijacking: every streaming entry point checks ``Origin``.

A page on another site can open a WebSocket or an EventSource to Stagewire,
and the browser sends the user's cookies with it; the ``Origin`` header is
how the server tells. ``/ws``, ``/app/{key}`` and ``/sse`` accept their own
origin, those of ``[server] allowed_origins``, and clients that send none
(not browsers); they refuse any other, ``null`` included, before anything
is streamed: ``/ws`` and ``/sse`` with HTTP 403, ``/app/{key}`` as Pusher
servers do, with ``pusher:error`` 4009 and a close right after the upgrade.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from tests.pusher.helpers import KEY, PusherClient, pusher_settings

ALLOWED = "https://app.example"
FOREIGN = ("https://evil.example", "http://app.example", "https://app.example.evil.example", "null")


@pytest.fixture
async def server(make_stagewire, tmp_path) -> Any:
    settings = pusher_settings(tmp_path).replace(server={"allowed_origins": [ALLOWED], "stats_interval": 0})
    return await make_stagewire(settings)


def origins(server: Any) -> list[str | None]:
    return [ALLOWED, server.url, None]


async def upgrade(url: str, origin: str | None) -> Any:
    return await websockets.connect(url, open_timeout=5, **({"origin": origin} if origin else {}))


@pytest.mark.parametrize("origin", FOREIGN)
async def test_a_foreign_origin_is_refused_on_every_entry_point(server, origin):
    ws = server.url.replace("http", "ws", 1)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await upgrade(f"{ws}/ws", origin)
    assert refused.value.response.status_code == 403
    # The Pusher shell refuses as Pusher servers do, with a close code pusher-js does not retry.
    pusher = await PusherClient.connect(server.url, origin=origin)
    assert not pusher.socket_id
    assert (await pusher.expect("pusher:error"))["data"]["code"] == 4009
    await asyncio.wait_for(pusher.ws.wait_closed(), 5)
    assert pusher.ws.close_code == 4009
    token = await server.token("sam")
    ticket = await sse_ticket(server, token)
    async with server.http.get(f"{server.url}/sse", params={"channel": "news:a", "ticket": ticket},
                               headers={"Origin": origin}) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == 103
    # The refused request did not spend the ticket: it was never looked at.
    async with server.http.get(f"{server.url}/sse", params={"channel": "news:a", "ticket": ticket}) as r:
        assert r.status == 200


async def test_an_allowed_origin_the_servers_own_and_none_are_accepted(server):
    ws = server.url.replace("http", "ws", 1)
    for origin in origins(server):
        native = await upgrade(f"{ws}/ws", origin)
        await native.close()
        client = await PusherClient.connect(server.url, **({"origin": origin} if origin else {}))
        assert client.socket_id
        await client.close()
        token = await server.token("sam")
        headers = {"Origin": origin} if origin else {}
        async with server.http.get(f"{server.url}/sse", headers=headers,
                                   params={"channel": "news:a", "ticket": await sse_ticket(server, token)}) as r:
            assert r.status == 200, (origin, await r.text())
            assert r.headers["Content-Type"].startswith("text/event-stream")


async def sse_ticket(server: Any, token: str) -> str:
    async with server.http.post(f"{server.url}/api/sse/ticket", json={},
                                headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        ticket: str = (await r.json())["ticket"]
        return ticket
