"""The Python client against a live server: connect, commands, subscriptions, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from stagewire_client import (
    CannotConnect,
    Client,
    ClientError,
    CloseCode,
    ConnectInfo,
    Disconnected,
    ErrorCode,
    Position,
    PresenceEvent,
    StagewireError,
)

from server.appkeys import NODE
from server.auth.tokens import TokenSigner
from tests.client.helpers import closed_port, eventually, next_pub, next_pubs
from tests.conftest import make_settings


async def publish(sw, channel, data):
    status, body = await sw.api("POST", "/api/publish", {"channel": channel, "data": data})
    assert status == 200, body
    return body


async def test_connect_authenticates_and_reports_the_session(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    assert client.connected
    assert client.info is not None
    assert client.info.user["username"] == "alice"
    assert client.info.ping == 25.0 and client.info.expires_in > 3000
    assert client.info.client in stagewire.app[NODE].connections


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_subscribe_iterates_publications_in_order(stagewire, sdk, encoding) -> None:
    client = await sdk(stagewire, "alice", encoding=encoding)
    sub = await client.subscribe("chat:lobby")
    assert (sub.offset, sub.recovered) == (0, None) and sub.epoch
    first = await client.publish("chat:lobby", {"text": "hi"})
    await publish(stagewire, "chat:lobby", [1, 2])
    pubs = await next_pubs(sub, 2)
    assert [(p.channel, p.offset, p.data) for p in pubs] == [("chat:lobby", 1, {"text": "hi"}),
                                                              ("chat:lobby", 2, [1, 2])]
    assert pubs[0].info == {"user": "alice"} and pubs[1].info is None
    assert first == Position(1, sub.epoch)
    assert sub.position == Position(2, sub.epoch)


async def test_many_publications_arrive_coalesced_and_all_in_order(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    sub = await client.subscribe("chat:burst")
    # Sent without waiting, they reach the client several to a frame.
    await asyncio.gather(*(client.publish("chat:burst", i) for i in range(50)))
    assert [p.data for p in await next_pubs(sub, 50)] == sorted(range(50))


async def test_async_for_over_subscribe_directly(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    received = []

    async def consume() -> None:
        async for pub in client.subscribe("news:direct"):
            received.append(pub.data)
            if len(received) == 2:
                return

    task = asyncio.create_task(consume())
    await eventually(lambda: "news:direct" in stagewire.app[NODE].channel_counts(), "the subscription")
    await publish(stagewire, "news:direct", "a")
    await publish(stagewire, "news:direct", "b")
    await asyncio.wait_for(task, 5)
    assert received == ["a", "b"]


async def test_call_runs_any_handler(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    assert await client.call("ping") == {}
    await publish(stagewire, "news:calls", "x")
    result = await client.call("history", {"channel": "news:calls"})
    assert [p["data"] for p in result["publications"]] == ["x"]
    await client.ping()


async def test_history_since_limit_and_reverse(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    for i in range(1, 6):
        body = await publish(stagewire, "news:hist", i)
    history = await client.history("news:hist")
    assert [p.data for p in history.publications] == [1, 2, 3, 4, 5]
    assert (history.offset, history.epoch) == (5, body["epoch"])
    since = await client.history("news:hist", since=Position(3, body["epoch"]))
    assert [p.offset for p in since.publications] == [4, 5]
    newest = await client.history("news:hist", limit=2, reverse=True)
    assert [p.offset for p in newest.publications] == [5, 4]


async def test_presence_and_join_leave_events(stagewire, sdk) -> None:
    alice = await sdk(stagewire, "alice")
    bob = await sdk(stagewire, "bob")
    events: list[PresenceEvent] = []
    await alice.subscribe("chat:room", on_presence=events.append)
    bob_sub = await bob.subscribe("chat:room")
    await eventually(lambda: any(e.info.get("user") == "bob" for e in events), "bob's join")
    assert await alice.presence("chat:room") == {"alice": 1, "bob": 1}
    stats = await alice.presence_stats("chat:room")
    assert (stats.clients, stats.users) == (2, 2)
    await bob_sub.unsubscribe()
    await eventually(lambda: ("leave", "bob") in [(e.kind, e.info.get("user")) for e in events], "bob's leave")
    assert await alice.presence("chat:room") == {"alice": 1}


async def test_error_replies_raise_stagewire_errors_with_codes(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    with pytest.raises(StagewireError) as refused:
        await client.publish("news:main", "clients may not publish here")
    assert refused.value.code is ErrorCode.PERMISSION_DENIED and not refused.value.temporary
    with pytest.raises(StagewireError) as unknown:
        await client.call("no_such_command")
    assert unknown.value.code is ErrorCode.METHOD_NOT_FOUND
    with pytest.raises(StagewireError) as invalid:
        await client.history("news:x", limit=-1)
    assert invalid.value.code is ErrorCode.BAD_REQUEST and invalid.value.fields
    with pytest.raises(StagewireError) as presence:
        await client.presence("news:x")
    assert presence.value.code is ErrorCode.PERMISSION_DENIED
    assert client.connected  # errors leave the connection open


async def test_a_refused_subscription_raises_when_awaited_and_iterated(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    sub = client.subscribe("nope:x")
    with pytest.raises(StagewireError) as awaited:
        await sub
    assert awaited.value.code is ErrorCode.UNKNOWN_CHANNEL
    with pytest.raises(StagewireError):
        await next_pub(sub)
    assert sub.ended and "nope:x" not in client.subscriptions
    forbidden = client.subscribe("user:bob")
    with pytest.raises(StagewireError) as denied:
        async for _ in forbidden:
            pass
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    # The channel can be subscribed to again once a refusal removed it.
    await client.subscribe("user:alice")
    with pytest.raises(StagewireError) as twice:
        client.subscribe("user:alice")
    assert twice.value.code is ErrorCode.ALREADY_SUBSCRIBED


async def test_unsubscribe_and_close_end_iteration(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    async with client.subscribe("news:a") as sub_a:
        await publish(stagewire, "news:a", 1)
        assert (await next_pub(sub_a)).data == 1
    with pytest.raises(StopAsyncIteration):
        await next_pub(sub_a)
    await eventually(lambda: "news:a" not in stagewire.app[NODE].channel_counts(), "the unsubscribe")
    sub_b = await client.subscribe("news:b")
    await client.close()
    with pytest.raises(StopAsyncIteration):
        await next_pub(sub_b)
    with pytest.raises(Disconnected) as closed:
        await client.ping()
    assert closed.value.code == CloseCode.NORMAL and not closed.value.reconnect


async def test_a_final_disconnect_ends_subscriptions_and_calls(stagewire, sdk) -> None:
    losses: list[Disconnected] = []
    client = await sdk(stagewire, "alice", on_disconnect=losses.append, min_delay=0.01)
    sub = await client.subscribe("news:final")
    status, _ = await stagewire.api("POST", "/api/disconnect", {"user": "alice", "reason": "banned"})
    assert status == 200
    with pytest.raises(Disconnected) as ended:
        await next_pub(sub)
    assert (ended.value.code, ended.value.reason, ended.value.reconnect) == (
        CloseCode.FORCE_DISCONNECT, "banned", False)
    assert [(d.code, d.reconnect) for d in losses] == [(CloseCode.FORCE_DISCONNECT, False)]
    with pytest.raises(Disconnected):
        await client.publish("chat:x", 1)
    assert not client.connected


async def test_bad_and_expired_tokens_are_refused_at_connect(stagewire) -> None:
    with pytest.raises(StagewireError) as bad:
        await Client(stagewire.ws_url, token="not-a-token").connect()
    assert bad.value.code is ErrorCode.UNAUTHORIZED
    # Signed with the server's secret, an hour ago: genuine, but too old.
    signer = TokenSigner(["test-secret"], 3600, clock=lambda: time.time() - 7200)
    expired, _ = signer.issue(1, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(StagewireError) as old:
        await Client(stagewire.ws_url, token=expired).connect()
    assert old.value.code is ErrorCode.TOKEN_EXPIRED


async def test_unreachable_servers_raise_cannot_connect(stagewire) -> None:
    port = closed_port()
    with pytest.raises(CannotConnect, match="connection refused"):
        await Client(f"ws://127.0.0.1:{port}/ws", token="t").connect()
    with pytest.raises(CannotConnect, match="HTTP 404"):
        await Client(stagewire.url + "/not-ws", token="t").connect()
    with pytest.raises(CannotConnect, match="invalid URL"):
        await Client("nonsense", token="t").connect()


async def test_calls_need_a_connection(stagewire) -> None:
    client = Client(stagewire.ws_url, token="t")
    with pytest.raises(ClientError, match="not connected"):
        await client.ping()


async def test_refresh_replaces_the_token_without_reconnecting(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    connection = client.info.client if client.info else None
    expires_in = await client.refresh(await stagewire.login("alice"))
    assert expires_in > 3000
    with pytest.raises(StagewireError) as other_user:
        await client.refresh(await stagewire.token("bob"))
    assert other_user.value.code is ErrorCode.PERMISSION_DENIED
    assert client.info is not None and client.info.client == connection


async def test_a_token_provider_refreshes_before_expiry(make_stagewire, tmp_path, sdk) -> None:
    sw = await make_stagewire(make_settings(tmp_path, auth={"token_ttl": 3}))
    await sw.register("alice")
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return await sw.login("alice")

    connects: list[ConnectInfo] = []
    client = await sdk(sw, token=provider, on_connect=connects.append)
    sub = await client.subscribe("news:long")
    # Refreshed about a second before each expiry, the connection outlives its first token.
    await eventually(lambda: calls >= 3, "two refreshes", timeout=10)
    await publish(sw, "news:long", "still here")
    assert (await next_pub(sub)).data == "still here"
    assert len(connects) == 1


async def test_a_subscription_the_server_ends_ends_its_iterator(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice")
    node = stagewire.app[NODE]
    received = []

    async def consume() -> None:
        async for pub in client.subscribe("news:revoked"):
            received.append(pub.data)

    task = asyncio.create_task(consume())
    await eventually(lambda: "news:revoked" in node.channel_counts(), "the subscription")
    await publish(stagewire, "news:revoked", "before")
    await eventually(lambda: received == ["before"], "the first publication")
    conn = node.connections[client.info.client]
    await node.unsubscribe(conn, "news:revoked", reason="access revoked")
    await asyncio.wait_for(task, 5)
    assert received == ["before"] and "news:revoked" not in client.subscriptions
