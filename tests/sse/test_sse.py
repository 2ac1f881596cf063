"""GET /sse with a real HTTP client: tickets, the cookie session, events, Last-Event-ID, limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import aiohttp
import pytest

from server.appkeys import NODE
from server.sse import codec
from tests.conftest import make_settings


class EventStream:
    """Reads text/event-stream as EventSource does: events with their id, comments apart."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        event: dict[str, Any] = {}
        data: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), timeout)).decode()
            if line == "":
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line == "":
                if data or "event" in event:
                    event["data"] = json.loads("\n".join(data))
                    if "id" in event:
                        self.last_id = event["id"]
                    return event
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                self.comments.append(value)
                return {"comment": value}
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)
            else:
                event[field] = value

    async def expect(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            event = await self.next(timeout)
            if event.get("event") == name:
                return event


async def ticket(server, token: str, **body: Any) -> dict[str, Any]:
    async with server.http.post(f"{server.url}/api/sse/ticket", json=body,
                                headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


@pytest.fixture
async def open_stream(stagewire) -> AsyncIterator[Any]:
    responses: list[aiohttp.ClientResponse] = []

    async def open_(params: Any, headers: dict[str, str] | None = None, session: aiohttp.ClientSession | None = None,
                    status: int = 200) -> EventStream | aiohttp.ClientResponse:
        http = session or stagewire.http
        response = await http.get(f"{stagewire.url}/sse", params=params, headers=headers or {})
        responses.append(response)
        assert response.status == status, await response.text()
        if status != 200:
            return response
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return EventStream(response)

    yield open_
    for response in responses:
        response.close()


async def test_a_ticket_opens_a_stream_once(stagewire, open_stream):
    token = await stagewire.token("sam")
    t = (await ticket(stagewire, token))["ticket"]
    stream = await open_stream([("channel", "news:a"), ("channel", "chat:b"), ("ticket", t)])
    subscribed = await stream.expect("subscribed")
    assert subscribed["data"] == {"channels": {"news:a": {"offset": 0, "epoch": subscribed["data"]["channels"]["news:a"]["epoch"]},
                                               "chat:b": subscribed["data"]["channels"]["chat:b"]}}
    assert stream.retry == 2000
    refused = await open_stream([("channel", "news:a"), ("ticket", t)], status=401)
    assert (await refused.json())["error"]["code"] == 101
    await stagewire.api("POST", "/api/publish", {"channel": "news:a", "data": {"n": 1}})
    pub = await stream.expect("pub")
    assert pub["data"] == {"channel": "news:a", "offset": 1, "data": {"n": 1}}
    positions = codec.decode_id(pub["id"])
    assert positions is not None and positions["news:a"][0] == 1 and positions["chat:b"][0] == 0


async def test_refusals_before_the_stream_starts(stagewire, open_stream):
    token = await stagewire.token("sam")
    assert (await open_stream([("channel", "news:a")], status=401))
    t = lambda: ticket(stagewire, token)  # noqa: E731
    assert await open_stream([("channel", "user:someone-else"), ("ticket", (await t())["ticket"])], status=403)
    assert await open_stream([("channel", "nope:x"), ("ticket", (await t())["ticket"])], status=404)
    assert await open_stream([("ticket", (await t())["ticket"])], status=422)
    assert await open_stream([("channel", "news:a"), ("ticket", "forged")], status=401)
    assert await open_stream([("channel", "news:a"), ("ticket", (await t())["ticket"])],
                             headers={"Origin": "https://evil.example"}, status=403)


async def test_the_cookie_session_works_for_every_reconnect(stagewire, open_stream):
    token = await stagewire.token("cookie")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{stagewire.url}/api/sse/ticket", json={"cookie": True},
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            cookie = r.cookies["stagewire_sse"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/sse"
        for _ in range(2):
            stream = await open_stream([("channel", "news:c")], session=http)
            await stream.expect("subscribed")
            stream.response.close()


async def test_last_event_id_recovers_what_was_missed_or_says_reload(stagewire, open_stream):
    token = await stagewire.token("sam")
    stream = await open_stream([("channel", "news:r"), ("ticket", (await ticket(stagewire, token))["ticket"])])
    await stream.expect("subscribed")
    await stagewire.api("POST", "/api/publish", {"channel": "news:r", "data": 1})
    await stream.expect("pub")
    last = stream.last_id
    stream.response.close()
    for n in (2, 3):
        await stagewire.api("POST", "/api/publish", {"channel": "news:r", "data": n})
    again = await open_stream([("channel", "news:r"), ("ticket", (await ticket(stagewire, token))["ticket"])],
                              headers={"Last-Event-ID": last})
    subscribed = await again.expect("subscribed")
    assert subscribed["data"]["channels"]["news:r"]["recovered"] is True
    assert [(await again.expect("pub"))["data"]["data"] for _ in range(2)] == [2, 3]
    await stagewire.api("POST", "/api/publish", {"channel": "news:r", "data": 4})
    assert (await again.expect("pub"))["data"]["data"] == 4  # live, right after
    # A position from another epoch cannot be recovered: an explicit reload.
    stale = codec.encode_id({"news:r": (1, "another-epoch")})
    third = await open_stream([("channel", "news:r"), ("ticket", (await ticket(stagewire, token))["ticket"]),
                               ("last_event_id", stale)])
    assert (await third.expect("subscribed"))["data"]["channels"]["news:r"]["recovered"] is False
    reload = await third.expect("reload")
    assert reload["data"]["channel"] == "news:r" and reload["data"]["offset"] == 4


async def test_heartbeats_joins_and_the_end_of_a_stream(make_stagewire, tmp_path, open_stream):
    server = await make_stagewire(make_settings(tmp_path, client={"ping_interval": 0.2}))
    token = await server.token("sam")
    response = await server.http.get(f"{server.url}/sse", params=[("channel", "chat:h"),
                                                                ("ticket", (await ticket(server, token))["ticket"])])
    stream = EventStream(response)
    join = await stream.expect("join")

    assert join["data"] == {"channel": "chat:h", "info": {"user": "sam"}}
    while (await stream.next()).get("comment") != "ping":
        pass  # a heartbeat comes within ping_interval
    await server.api("POST", "/api/disconnect", {"user": "sam"})
    disconnect = await stream.expect("disconnect")
    assert disconnect["data"]["code"] == 4502 and disconnect["data"]["reconnect"] is False
    with pytest.raises(EOFError):
        await stream.next()
    await asyncio.sleep(0)
    assert not server.app[NODE].connections_of("sam")
    response.close()


async def test_a_slow_reader_is_cut_off(make_stagewire, tmp_path):
    server = await make_stagewire(make_settings(tmp_path, client={"write_buffer_limit": 100_000}))
    token = await server.token("slow")
    response = await server.http.get(f"{server.url}/sse", params=[("channel", "news:f"),
                                                                ("ticket", (await ticket(server, token))["ticket"])])
    response.connection.transport.pause_reading()  # stop reading
    for i in range(200):
        await server.api("POST", "/api/publish", {"channel": "news:f", "data": {"i": i, "pad": "x" * 50000}})
    for _ in range(200):  # the close waits for the peer up to 2 s, then cuts it off
        if not server.app[NODE].connections_of("slow"):
            break
        await asyncio.sleep(0.05)
    assert not server.app[NODE].connections_of("slow")
    assert server.app[NODE].counters.slow_disconnects == 1
    response.close()


async def test_a_reader_that_goes_away_is_released_whole(make_stagewire, tmp_path):
    server = await make_stagewire(make_settings(tmp_path, client={"ping_interval": 0.1}))
    token = await server.token("gone")
    response = await server.http.get(f"{server.url}/sse", params=[("channel", "chat:g"),
                                                                ("ticket", (await ticket(server, token))["ticket"])])
    await EventStream(response).expect("subscribed")
    node = server.app[NODE]
    [conn] = node.connections_of("gone")
    response.close()  # the browser left: the next heartbeat finds the peer gone
    await asyncio.wait_for(conn.finished, 5)
    assert conn.id not in node.connections and not node.connections_of("gone")
