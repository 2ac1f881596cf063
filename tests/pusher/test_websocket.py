"""The /app/{key} shell with a raw client: handshake, refusals, channels, presence, client events."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from server.appkeys import NODE, PUSHER
from tests.pusher.helpers import KEY, NAMESPACE, PusherClient, pusher_settings, sign


async def test_connection_established_gives_a_socket_id_and_the_activity_timeout(pusher_client):
    client = await pusher_client()
    assert client.established["activity_timeout"] == 120
    assert client.socket_id.count(".") == 1 and client.socket_id.replace(".", "").isdigit()
    await client.send("pusher:ping")
    assert (await client.expect("pusher:pong"))["data"] == "{}"


@pytest.mark.parametrize("key,query,code", [
    ("nope", "protocol=7", 4001),
    (KEY, "client=js", 4008),
    (KEY, "protocol=3", 4007),
])
async def test_refusals_send_pusher_error_and_close_with_its_code(pusher_app, key, query, code):
    client = await PusherClient.connect(pusher_app.url, key=key, query=query)
    error = await client.expect("pusher:error")
    assert error["data"]["code"] == code
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == code


async def test_a_foreign_origin_gets_pusher_error_4009_and_is_closed(pusher_app):
    """As Pusher servers do: a close code that pusher-js does not retry, where an HTTP 403 makes it retry forever."""
    client = await PusherClient.connect(pusher_app.url, origin="https://evil.example")
    assert not client.socket_id
    error = await client.expect("pusher:error")
    assert error["data"] == {"code": 4009, "message": "Origin not allowed"}
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 4009


async def test_a_disabled_app_and_an_app_over_quota_are_refused(make_stagewire, tmp_path):
    disabled = await make_stagewire(pusher_settings(tmp_path / "a", enabled=False))
    client = await PusherClient.connect(disabled.url)
    assert (await client.expect("pusher:error"))["data"]["code"] == 4003
    full = await make_stagewire(pusher_settings(tmp_path / "b", max_connections=1))
    first = await PusherClient.connect(full.url)
    assert first.socket_id
    second = await PusherClient.connect(full.url)
    assert (await second.expect("pusher:error"))["data"]["code"] == 4004
    await asyncio.wait_for(second.ws.wait_closed(), 5)
    assert second.ws.close_code == 4004
    await first.close()
    for _ in range(100):  # the quota entry goes when the connection's cleanup ran
        third = await PusherClient.connect(full.url)
        if third.socket_id:
            break
        await asyncio.sleep(0.05)
    assert third.socket_id
    await third.close()


async def test_public_channel_gets_http_api_events_and_native_publications(pusher_app, pusher_client):
    client = await pusher_client()
    reply = await client.subscribe("orders")
    assert reply == {"event": "pusher_internal:subscription_succeeded", "channel": "orders", "data": "{}"}
    status, _ = await pusher_app.api("POST", "/api/publish", {"channel": f"{NAMESPACE}:orders", "data": {"id": 7}})
    assert status == 200
    event = await client.expect("message", "orders")
    assert json.loads(event["data"]) == {"id": 7}
    native = await pusher_app.client("nat")
    await native.result("subscribe", channel=f"{NAMESPACE}:orders")
    await native.result("publish", channel=f"{NAMESPACE}:orders", data={"from": "native"})
    assert json.loads((await client.expect("message", "orders"))["data"]) == {"from": "native"}
    await client.assert_quiet()


async def test_private_channels_need_the_apps_signature(pusher_client):
    client = await pusher_client()
    await client.send("pusher:subscribe", {"channel": "private-x", "auth": client.auth("private-x", secret="wrong")})
    error = await client.expect("pusher:subscription_error", "private-x")
    assert error["data"]["status"] == 401 and error["data"]["type"] == "AuthError"
    await client.send("pusher:subscribe", {"channel": "private-x", "auth": f"other-key:{sign(f'{client.socket_id}:private-x')}"})
    assert (await client.expect("pusher:subscription_error", "private-x"))["data"]["status"] == 401
    assert (await client.subscribe("private-x"))["event"] == "pusher_internal:subscription_succeeded"
    # A signature is for one socket: another connection cannot reuse it.
    other = await pusher_client()
    await other.send("pusher:subscribe", {"channel": "private-x", "auth": client.auth("private-x")})
    assert (await other.expect("pusher:subscription_error", "private-x"))["data"]["status"] == 401


async def test_presence_members_join_once_per_user_and_leave_with_the_last_connection(pusher_client):
    watcher = await pusher_client()
    ok = await watcher.subscribe("presence-room", "w", {"name": "Watcher"})
    assert json.loads(ok["data"]) == {"presence": {"ids": ["w"], "hash": {"w": {"name": "Watcher"}}, "count": 1}}
    tab1, tab2 = await pusher_client(), await pusher_client()
    joined = await tab1.subscribe("presence-room", "alice", {"name": "Alice"})
    presence = json.loads(joined["data"])["presence"]
    assert presence["ids"] == ["alice", "w"] and presence["count"] == 2
    assert presence["hash"]["alice"] == {"name": "Alice"}
    added = await watcher.expect("pusher_internal:member_added", "presence-room")
    assert json.loads(added["data"]) == {"user_id": "alice", "user_info": {"name": "Alice"}}
    await tab2.subscribe("presence-room", "alice", {"name": "Alice"})
    await tab1.send("pusher:unsubscribe", {"channel": "presence-room"})
    await tab1.assert_quiet()  # the leaver hears nothing of its own going
    await watcher.assert_quiet()  # alice's second tab: no second join, no leave yet
    await tab2.close()
    removed = await watcher.expect("pusher_internal:member_removed", "presence-room")
    assert json.loads(removed["data"]) == {"user_id": "alice"}
    await watcher.assert_quiet()


async def test_native_members_are_members_of_the_pusher_presence_channel(pusher_app, pusher_client):
    native = await pusher_app.client("nadia")
    await native.result("subscribe", channel=f"{NAMESPACE}:presence-mix")
    client = await pusher_client()
    ok = await client.subscribe("presence-mix", "bob", {"n": 1})
    assert json.loads(ok["data"])["presence"]["ids"] == ["bob", "nadia"]
    assert await native.result("presence", channel=f"{NAMESPACE}:presence-mix") == {
        "users": [{"user": "bob", "connections": 1}, {"user": "nadia", "connections": 1}]}
    join = await native.recv_push("join", channel=f"{NAMESPACE}:presence-mix")
    while join["info"]["user"] != "bob":
        join = await native.recv_push("join", channel=f"{NAMESPACE}:presence-mix")
    assert join["info"]["user_info"] == '{"n":1}'  # the JSON text, as the member's info is stored
    await native.close()
    removed = await client.expect("pusher_internal:member_removed", "presence-mix")
    assert json.loads(removed["data"]) == {"user_id": "nadia"}


async def test_presence_limits_members_and_user_info_size(make_stagewire, tmp_path):
    server = await make_stagewire(pusher_settings(tmp_path, max_presence_members=2, max_presence_member_size=20))
    clients = [await PusherClient.connect(server.url) for _ in range(4)]
    assert (await clients[0].subscribe("presence-small", "a"))["event"].endswith("subscription_succeeded")
    assert (await clients[1].subscribe("presence-small", "b"))["event"].endswith("subscription_succeeded")
    full = await clients[2].subscribe("presence-small", "c")
    assert full["event"] == "pusher:subscription_error" and full["data"]["status"] == 4100
    # A user already present may add a connection.
    assert (await clients[3].subscribe("presence-small", "a"))["event"].endswith("subscription_succeeded")
    big = await clients[2].subscribe("presence-other", "c", {"bio": "x" * 30})
    assert big["event"] == "pusher:subscription_error" and big["data"]["status"] == 413
    for client in clients:
        await client.close()


async def test_client_events_reach_other_members_only_with_the_user_id(pusher_app, pusher_client):
    alice, bob = await pusher_client(), await pusher_client()
    await alice.subscribe("presence-chat", "alice")
    await bob.subscribe("presence-chat", "bob")
    await alice.expect("pusher_internal:member_added", "presence-chat")
    native = await pusher_app.client("nat")
    await native.result("subscribe", channel=f"{NAMESPACE}:presence-chat")
    await alice.send("client-typing", {"now": True}, "presence-chat")
    event = await bob.expect("client-typing", "presence-chat")
    assert event["user_id"] == "alice" and json.loads(event["data"]) == {"now": True}
    pub = await native.recv_push("pub", channel=f"{NAMESPACE}:presence-chat")
    assert pub["data"] == {"now": True} and pub["info"]["event"] == "client-typing" and pub["info"]["user_id"] == "alice"
    await alice.expect("pusher_internal:member_added", "presence-chat")  # nat joined
    await alice.assert_quiet()  # never echoed to the sender


async def test_client_events_are_refused_where_pusher_refuses_them(make_stagewire, tmp_path, pusher_client):
    client = await pusher_client()
    await client.subscribe("public")
    await client.send("client-x", {}, "public")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4302
    await client.send("client-x", {}, "private-unsubscribed")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4302
    await client.subscribe("private-big")
    await client.send("client-x", {"x": "y" * 11000}, "private-big")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4303
    for _ in range(12):
        await client.send("client-x", {}, "private-big")
    error = await client.expect("pusher:error")
    assert error["data"]["code"] == 4301, error
    off = await make_stagewire(pusher_settings(tmp_path / "off", client_events=False))
    other = await PusherClient.connect(off.url)
    await other.subscribe("private-y")
    await other.send("client-x", {}, "private-y")
    assert "not enabled" in (await other.expect("pusher:error"))["data"]["message"]
    await other.close()


async def test_bad_input_gets_a_coded_error_and_the_connection_stays(pusher_client):
    client = await pusher_client()
    await client.ws.send("not json")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4300
    await client.ws.send(b"\x00binary")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4300
    await client.send("unknown-event", {})
    assert (await client.expect("pusher:error"))["data"]["code"] == 4300
    await client.send("pusher:subscribe", {"channel": "bad name!"})
    assert (await client.expect("pusher:error"))["data"]["code"] == 4300
    await client.assert_quiet()


async def test_cache_channels_replay_the_last_event_or_say_cache_miss(pusher_app, pusher_client):
    first = await pusher_client()
    await first.subscribe("cache-prices")
    assert (await first.expect("pusher:cache_miss", "cache-prices"))["channel"] == "cache-prices"
    for price in (1, 2, 3):
        await pusher_app.api("POST", "/api/publish", {"channel": f"{NAMESPACE}:cache-prices", "data": {"p": price}})
    late = await pusher_client()
    await late.subscribe("cache-prices")
    assert json.loads((await late.expect("message", "cache-prices"))["data"]) == {"p": 3}
    await late.assert_quiet()


async def test_sign_in_delivers_server_to_user_events_and_terminate_closes(pusher_app, pusher_client):
    client = await pusher_client()
    user_data = json.dumps({"id": "u1", "user_info": {"n": 1}})
    await client.send("pusher:subscribe", {"channel": "#server-to-user-u1"})
    assert (await client.expect("pusher:subscription_error"))["data"]["status"] == 403
    await client.send("pusher:signin", {"auth": f"{KEY}:{sign(f'{client.socket_id}::user::{user_data}')}",
                                        "user_data": user_data})
    assert json.loads((await client.expect("pusher:signin_success"))["data"]) == {"user_data": user_data}
    assert (await client.subscribe("#server-to-user-u1"))["event"].endswith("subscription_succeeded")
    await pusher_app.api("POST", "/api/publish", {"channel": f"{NAMESPACE}:#server-to-user-u1", "data": {"hi": 1}})
    assert json.loads((await client.expect("message", "#server-to-user-u1"))["data"]) == {"hi": 1}
    # Signed in, a presence channel needs no channel_data.
    await client.send("pusher:subscribe", {"channel": "presence-p", "auth": client.auth("presence-p")})
    ok = await client.expect("pusher_internal:subscription_succeeded", "presence-p")
    assert json.loads(ok["data"])["presence"]["hash"] == {"u1": {"n": 1}}
    await pusher_app.app[PUSHER].terminate("1001", "u1")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4009
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 4009


async def test_a_bad_sign_in_closes_with_4009(pusher_client):
    client = await pusher_client()
    await client.send("pusher:signin", {"auth": f"{KEY}:bad", "user_data": '{"id":"x"}'})
    assert (await client.expect("pusher:error"))["data"]["code"] == 4009
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 4009


async def test_native_clients_cannot_touch_internal_channels(pusher_app):
    native = await pusher_app.client("nat")
    await native.assert_error(103, "subscribe", channel=f"{NAMESPACE}:#server-to-user-nat")
    await native.assert_error(103, "publish", channel=f"{NAMESPACE}:#server-to-user-nat", data=1)


async def test_shutdown_tells_pusher_clients_to_reconnect_at_once(pusher_app, pusher_client):
    client = await pusher_client()
    await pusher_app.app[NODE].shutdown(2)
    assert (await client.expect("pusher:error"))["data"]["code"] == 4200
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 4200


async def test_a_slow_pusher_client_is_cut_off_alone(make_stagewire, tmp_path):
    server = await make_stagewire(pusher_settings(tmp_path))
    slow = await PusherClient.connect(server.url, max_size=None)
    fast = await PusherClient.connect(server.url, max_size=None, max_queue=None)  # reads all it gets
    await slow.subscribe("firehose")
    await fast.subscribe("firehose")
    slow.ws.transport.pause_reading()  # a client that stopped reading
    publisher = await server.client("pub")
    for batch in range(60):  # 12 MB in all, paced so that the fast reader keeps up
        ids = [await publisher.send("publish", channel=f"{NAMESPACE}:firehose", data={"i": i, "pad": "x" * 40000})
               for i in range(batch * 5, batch * 5 + 5)]
        for command_id in ids:
            assert "result" in await publisher.reply(command_id)
        for i in range(batch * 5, batch * 5 + 5):
            assert json.loads((await fast.expect("message", "firehose"))["data"])["i"] == i
    slow.ws.transport.resume_reading()
    with pytest.raises(websockets.ConnectionClosed):
        while True:  # what the socket still held, then the close
            await slow.recv(timeout=10)
    # Aborted, not closed: a close frame would have waited behind all it did not read.
    assert slow.ws.close_code == 1006
    await fast.assert_quiet()
